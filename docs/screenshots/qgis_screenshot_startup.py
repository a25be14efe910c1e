from qgis.core import QgsProject, QgsRasterLayer, QgsContrastEnhancement, QgsMultiBandColorRenderer
from qgis.PyQt.QtCore import QTimer, Qt
from qgis.utils import iface, plugins
import qgis.utils

S = "/work/main/resources/sample/spain/"
s1 = QgsRasterLayer(S + "Spain_7370579_S1Hand.tif", "Spain S1 (VV, VH)", "gdal")
s2 = QgsRasterLayer(S + "Spain_7370579_S2Hand.tif", "Spain S2 (L1C)", "gdal")
r = QgsMultiBandColorRenderer(s2.dataProvider(), 4, 3, 2)
for setter in (r.setRedContrastEnhancement, r.setGreenContrastEnhancement, r.setBlueContrastEnhancement):
    ce = QgsContrastEnhancement(s2.dataProvider().dataType(4))
    ce.setContrastEnhancementAlgorithm(QgsContrastEnhancement.StretchToMinimumMaximum)
    ce.setMinimumValue(300); ce.setMaximumValue(2500)
    setter(ce)
s2.setRenderer(r)
QgsProject.instance().addMapLayers([s1, s2])
from qgis.PyQt.QtWidgets import QDockWidget
iface.mainWindow().setGeometry(0, 0, 1600, 1000)
for name in ("Browser", "Browser2"):
    w = iface.mainWindow().findChild(QDockWidget, name)
    if w: w.hide()
plugin = plugins["mosaic"]
dock = plugin.dock
dock.show()
dock.raise_()
dock.optical_combo.setLayer(s2)
dock.sar_combo.setLayer(s1)
dock.output_dir.setFilePath("/tmp/shot/out")

def after():
    layers = dock.last_layers
    if not layers:
        QTimer.singleShot(1000, after)
        return
    iface.setActiveLayer(layers[0])
    iface.zoomToActiveLayer()
    iface.mapCanvas().refresh()
    open("/tmp/shot/ready", "w").write("ok")

def go():
    dock.classify_button.click()
    QTimer.singleShot(2000, after)

QTimer.singleShot(3000, go)
