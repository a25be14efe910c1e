"""QGIS startup script for take_stage.sh: the classify dialog over the USA JPEG 2000 band files,
its advanced parameters open (Decode inputs once first), then the run's log."""
import glob
import os

from osgeo import gdal
from qgis.core import QgsProject, QgsRasterLayer
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtWidgets import QGroupBox, QScrollArea
from qgis.utils import iface

import processing

REPO = os.environ["MOSAIC_REPO"]
OUT = "/tmp/shot"
bands = sorted(glob.glob(f"{REPO}/tests/data/s2-l1c-usa/s2_B*.jp2"))
gdal.BuildVRT(f"{OUT}/usa_l1c.vrt", bands, separate=True, resolution="highest", resampleAlg="bilinear")
layer = QgsRasterLayer(f"{OUT}/usa_l1c.vrt", "USA L1C (13 JPEG 2000 band files)", "gdal")
QgsProject.instance().addMapLayer(layer)
iface.mainWindow().setGeometry(0, 0, 1600, 1000)
params = {"OPTICAL": layer.id(), "OPTICAL_BANDS": "B01,B02,B03,B04,B05,B06,B07,B08,B09,-,B11,B12,B8A",
          "STRIDE": 16, "DOMINANT": f"{OUT}/out/dominant.tif", "PROBABILITIES": f"{OUT}/out/probabilities.tif"}
dlg = processing.createAlgorithmDialog("mosaic:classify", params)
dlg.setGeometry(200, 40, 1150, 930)
dlg.show()


def open_advanced():
    for box in dlg.findChildren(QGroupBox):  # a QgsCollapsibleGroupBox, seen from Python as its base
        if "Advanced" in box.title():
            box.setProperty("collapsed", False)
    for area in dlg.findChildren(QScrollArea):
        bar = area.verticalScrollBar()
        bar.setValue(bar.maximum())
    QTimer.singleShot(1500, lambda: open(f"{OUT}/ready1", "w").write("ok"))


def run():
    if not os.path.exists(f"{OUT}/ready1.taken"):
        QTimer.singleShot(500, run)
        return
    dlg.runAlgorithm()
    wait_done()


def wait_done():
    if not os.path.exists(f"{OUT}/out/dominant.tif"):
        QTimer.singleShot(1000, wait_done)
        return
    QTimer.singleShot(3000, lambda: open(f"{OUT}/ready2", "w").write("ok"))


QTimer.singleShot(3000, open_advanced)
QTimer.singleShot(4000, run)
