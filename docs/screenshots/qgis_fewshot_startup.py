"""QGIS startup code for the few-shot screenshot (run by docs/screenshots/take_fewshot.sh).

Loads the Spain scene, puts the first labelling pass of the hand-drawn polygons
(resources/sample/labels, the "quick" ones; orchards as a new class "Orchards") into a MoSAiC
label layer as the dock's drawing tool does, fine-tunes from the dock (a background task), then
classifies again with the new model and fits its fine map on screen.
"""
import json
import os
import sys
from pathlib import Path

from qgis.core import (QgsCoordinateReferenceSystem, QgsFillSymbol, QgsGeometry, QgsPalLayerSettings, QgsPointXY,
                       QgsProject, QgsVectorLayerSimpleLabeling)
from qgis.PyQt.QtCore import QTimer
from qgis.utils import iface

REPO = Path(os.environ.get("MOSAIC_REPO", "."))  # QGIS runs --code without __file__
sys.path.insert(0, str(REPO / "docs" / "screenshots"))
from spain_desktop import fit_on_screen, show_dock, spain_layers  # noqa: E402

OUT = Path("/tmp/shot5")
OUT.mkdir(exist_ok=True)
lbl_mod = __import__("mosaic.mosaic_qgis.labels", fromlist=["create_label_layer"])

s1, s2 = spain_layers(REPO)

labels = lbl_mod.create_label_layer(OUT / "labels.gpkg", QgsCoordinateReferenceSystem("EPSG:4326"))
# the first labelling pass of resources/sample/labels (its "quick" polygons), orchards as a new class
with open(REPO / "resources" / "sample" / "labels" / "spain_polygons.geojson") as f:
    for feature in json.load(f)["features"]:
        if feature["properties"]["quick"]:
            ring = [QgsPointXY(x, y) for x, y in feature["geometry"]["coordinates"][0]]
            names = ["Orchards" if n == "Permanent crops" else n for n in feature["properties"]["labels"].split(";")]
            lbl_mod.add_labelled_polygon(labels, QgsGeometry.fromPolygonXY([ring]), names)
labels.commitChanges()
labels.setRenderer(labels.renderer().__class__(QgsFillSymbol.createSimple(
    {"color": "0,0,0,0", "outline_color": "255,0,255", "outline_width": "0.8"})))
pal = QgsPalLayerSettings()
pal.fieldName = "labels"
pal.enabled = True
labels.setLabeling(QgsVectorLayerSimpleLabeling(pal))
labels.setLabelsEnabled(True)
QgsProject.instance().addMapLayer(labels)

dock = show_dock(s1, s2, OUT / "out", labels)
dock.labels.epochs_spin.setValue(3)


def after_classify() -> None:
    if not dock.last_layers:
        QTimer.singleShot(1000, after_classify)
        return
    root = QgsProject.instance().layerTreeRoot()
    node = root.findLayer(labels.id())
    clone = node.clone()
    root.insertChildNode(0, clone)
    node.parent().removeChildNode(node)
    iface.setActiveLayer(dock.last_layers[0])
    iface.messageBar().clearWidgets()
    QTimer.singleShot(1500, lambda: (fit_on_screen(dock.last_layers[0]),
                                     QTimer.singleShot(3000, lambda: (OUT / "ready").write_text("ok"))))


def after_finetune() -> None:
    if dock.finetune_task is not None:
        QTimer.singleShot(1000, after_finetune)
        return
    dock.classify_button.click()
    QTimer.singleShot(2000, after_classify)


def go() -> None:
    dock.start_finetune()
    QTimer.singleShot(2000, after_finetune)


QTimer.singleShot(3000, go)
