"""QGIS startup code for the fine-map screenshot (run by docs/screenshots/take_finemap.sh).

Loads the Spain scene and the hand-drawn polygons (resources/sample/labels), fine-tunes the
bundled model on them from the dock (a background task, as an analyst would), then classifies
with the new model: the dock ticks the fine map for it, and the fine classes land on top with
their legend.
"""
import os
from pathlib import Path

import sys

from qgis.core import QgsFillSymbol, QgsProject, QgsVectorLayer
from qgis.PyQt.QtCore import QTimer
from qgis.utils import iface

REPO = Path(os.environ.get("MOSAIC_REPO", "."))  # QGIS runs --code without __file__
sys.path.insert(0, str(REPO / "docs" / "screenshots"))
from spain_desktop import fit_on_screen, show_dock, spain_layers  # noqa: E402

OUT = Path(os.environ.get("SHOTS", "/tmp/shot-fine"))
OUT.mkdir(exist_ok=True)

s1, s2 = spain_layers(REPO)
labels = QgsVectorLayer(str(REPO / "resources" / "sample" / "labels" / "spain_polygons.geojson"),
                        "Drawn polygons (43)", "ogr")
labels.setRenderer(labels.renderer().__class__(QgsFillSymbol.createSimple(
    {"color": "0,0,0,0", "outline_color": "0,0,0", "outline_width": "0.6"})))
QgsProject.instance().addMapLayer(labels)
dock = show_dock(s1, s2, OUT / "out", labels)


def after_classify() -> None:
    if not dock.last_layers:
        QTimer.singleShot(1000, after_classify)
        return
    root = QgsProject.instance().layerTreeRoot()
    node = root.findLayer(labels.id())  # the polygons above the map
    root.insertChildNode(0, node.clone())
    node.parent().removeChildNode(node)
    for layer in dock.last_layers[1:]:  # only the fine classes shown; the other outputs listed below
        root.findLayer(layer.id()).setItemVisibilityChecked(False)
    iface.setActiveLayer(dock.last_layers[0])
    iface.messageBar().clearWidgets()  # the map, not the "done" bar, at the top of the canvas
    QTimer.singleShot(1500, zoom_to_map)  # once the canvas has its final size


def zoom_to_map() -> None:
    fit_on_screen(dock.last_layers[0])
    QTimer.singleShot(4000, lambda: (OUT / "ready").write_text("ok"))


def after_finetune() -> None:
    if dock.finetune_task is not None:
        QTimer.singleShot(1000, after_finetune)
        return
    dock.classify_button.click()  # the new model is selected, the fine map ticked
    QTimer.singleShot(2000, after_classify)


def go() -> None:
    dock.start_finetune()
    QTimer.singleShot(2000, after_finetune)


QTimer.singleShot(3000, go)
