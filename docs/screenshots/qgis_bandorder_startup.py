"""QGIS startup code for the band-order screenshots (run by docs/screenshots/take_bandorder.sh): the
USA band files stacked with gdalbuildvrt -separate under names that say nothing (layer_01.jp2 ...,
in file-name order: B8A last) as the optical layer; the dock says the order is a guess, and
Classify asks before reading it, with what the band check makes of the values."""
import glob
import os
import shutil
import sys
from pathlib import Path

from osgeo import gdal
from qgis.core import QgsProject, QgsRasterLayer
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtWidgets import QApplication
from qgis.utils import iface

REPO = Path(os.environ.get("MOSAIC_REPO", "."))  # QGIS runs --code without __file__
sys.path.insert(0, str(REPO / "docs" / "screenshots"))
from spain_desktop import fit_on_screen, show_dock  # noqa: E402

from mosaic.mosaic_qgis.styling import true_colour_renderer  # noqa: E402

OUT = Path(os.environ.get("SHOTS", "/tmp/shot-bandorder"))
OUT.mkdir(exist_ok=True)
copies = []
for k, f in enumerate(sorted(glob.glob(str(REPO / "resources" / "sample" / "germany" / "*_B*.jp2"))), 1):
    copies.append(str(OUT / f"layer_{k:02d}.jp2"))
    shutil.copy(f, copies[-1])
gdal.BuildVRT(str(OUT / "germany_bands.vrt"), copies, separate=True, resolution="highest").FlushCache()
layer = QgsRasterLayer(str(OUT / "germany_bands.vrt"), "germany_bands (13 unnamed bands)", "gdal")
layer.setRenderer(true_colour_renderer(layer))
QgsProject.instance().addMapLayer(layer)
dock = show_dock(layer, layer, OUT / "out", size=(1366, 768))
dock.sar_combo.setLayer(None)
dock.optical_bands.clear()
iface.mainWindow().showMaximized()


def ask() -> None:
    QTimer.singleShot(2500, lambda: (OUT / "dialog").write_text("ok"))
    QTimer.singleShot(500, close_when_taken)
    dock.classify_button.click()  # the question is modal: the timers above run inside it


def close_when_taken() -> None:
    box = QApplication.activeModalWidget()
    if (OUT / "dialog.taken").exists() and box is not None:
        box.reject()
        return
    QTimer.singleShot(500, close_when_taken)


def field() -> None:
    fit_on_screen(layer, screen_height=768)
    dock.settings_area.ensureWidgetVisible(dock.optical_band_warning)
    (OUT / "field").write_text("ok")
    QTimer.singleShot(1000, wait_field)


def wait_field() -> None:
    if (OUT / "field.taken").exists():
        ask()
    else:
        QTimer.singleShot(500, wait_field)


QTimer.singleShot(3000, field)
