"""QGIS startup code for the few-shot screenshot (run by docs/screenshots/take_fewshot.sh).

Loads the Spain scene, draws labelled polygons into a MoSAiC label layer (a new class
"Orchards" and two known ones), fine-tunes from the dock (a background task), then
classifies again with the new model and zooms to it.
"""
from pathlib import Path

from qgis.core import (QgsContrastEnhancement, QgsCoordinateReferenceSystem, QgsFillSymbol, QgsGeometry,
                       QgsMultiBandColorRenderer, QgsPalLayerSettings, QgsProject, QgsRasterLayer, QgsRectangle,
                       QgsVectorLayerSimpleLabeling)
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtWidgets import QDockWidget
from qgis.utils import iface, plugins

import os

REPO = Path(os.environ.get("MOSAIC_REPO", "."))  # QGIS runs --code without __file__
S = REPO / "resources" / "sample" / "spain"
OUT = Path("/tmp/shot5")
OUT.mkdir(exist_ok=True)
lbl_mod = __import__("mosaic.mosaic_qgis.labels", fromlist=["create_label_layer"])

s1 = QgsRasterLayer(str(S / "Spain_7370579_S1Hand.tif"), "Spain S1 (VV, VH)", "gdal")
s2 = QgsRasterLayer(str(S / "Spain_7370579_S2Hand.tif"), "Spain S2 (L1C)", "gdal")
r = QgsMultiBandColorRenderer(s2.dataProvider(), 4, 3, 2)
for setter in (r.setRedContrastEnhancement, r.setGreenContrastEnhancement, r.setBlueContrastEnhancement):
    ce = QgsContrastEnhancement(s2.dataProvider().dataType(4))
    ce.setContrastEnhancementAlgorithm(QgsContrastEnhancement.StretchToMinimumMaximum)
    ce.setMinimumValue(300)
    ce.setMaximumValue(2500)
    setter(ce)
s2.setRenderer(r)
QgsProject.instance().addMapLayers([s1, s2])

labels = lbl_mod.create_label_layer(OUT / "labels.gpkg", QgsCoordinateReferenceSystem("EPSG:4326"))
ext = s2.extent()


def square(fx: float, fy: float, d: float = 0.004) -> QgsGeometry:
    x = ext.xMinimum() + fx * ext.width()
    y = ext.yMinimum() + fy * ext.height()
    return QgsGeometry.fromRect(QgsRectangle(x, y, x + d, y + d))


POLYGONS = [((0.15, 0.2), ["Orchards"]), ((0.35, 0.15), ["Orchards"]), ((0.2, 0.45), ["Orchards", "Arable land"]),
            ((0.6, 0.2), ["Arable land"]), ((0.45, 0.35), ["Arable land"]), ((0.1, 0.7), ["Urban fabric"]),
            ((0.7, 0.65), ["Inland waters"]), ((0.8, 0.75), ["Inland waters"])]
for (fx, fy), names in POLYGONS:
    lbl_mod.add_labelled_polygon(labels, square(fx, fy), names)
labels.commitChanges()
labels.setRenderer(labels.renderer().__class__(QgsFillSymbol.createSimple(
    {"color": "0,0,0,0", "outline_color": "255,0,255", "outline_width": "0.8"})))
pal = QgsPalLayerSettings()
pal.fieldName = "labels"
pal.enabled = True
labels.setLabeling(QgsVectorLayerSimpleLabeling(pal))
labels.setLabelsEnabled(True)
QgsProject.instance().addMapLayer(labels)

iface.mainWindow().setGeometry(0, 0, 1600, 1000)
for name in ("Browser", "Browser2"):
    w = iface.mainWindow().findChild(QDockWidget, name)
    if w:
        w.hide()
dock = plugins["mosaic"].dock
dock.show()
dock.raise_()
dock.optical_combo.setLayer(s2)
dock.sar_combo.setLayer(s1)
dock.optical_bands.setText("S2-13") if hasattr(dock, "optical_bands") else None
dock.output_dir.setFilePath(str(OUT / "out"))
dock.label_layer_combo.setLayer(labels)
dock.epochs_spin.setValue(3)


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
    iface.zoomToActiveLayer()
    iface.mapCanvas().refresh()
    QTimer.singleShot(3000, lambda: (OUT / "ready").write_text("ok"))


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
