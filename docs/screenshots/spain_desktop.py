"""What the screenshot startup scripts share: the Spain scene's layers, styled, and the dock
shown beside the canvas of a 1600 x 1000 desktop with the scene as its inputs."""
from pathlib import Path

from qgis.core import QgsMapLayer, QgsProject, QgsRasterLayer, QgsRectangle
from qgis.PyQt.QtWidgets import QDockWidget
from qgis.utils import iface, plugins

from mosaic.mosaic_qgis.styling import true_colour_renderer  # the plugin, as QGIS loads it


def spain_layers(repo: Path) -> tuple[QgsRasterLayer, QgsRasterLayer]:
    """The sample's S1 and S2 (true colour) layers, added to the project: (s1, s2)."""
    s = repo / "resources" / "sample" / "spain"
    s1 = QgsRasterLayer(str(s / "Spain_7370579_S1Hand.tif"), "Spain S1 (VV, VH)", "gdal")
    s2 = QgsRasterLayer(str(s / "Spain_7370579_S2Hand.tif"), "Spain S2 (L1C)", "gdal")
    s2.setRenderer(true_colour_renderer(s2))
    QgsProject.instance().addMapLayers([s1, s2])
    return s1, s2


def show_dock(s1: QgsRasterLayer, s2: QgsRasterLayer, out: Path, labels=None, size: tuple[int, int] = (1600, 1000)):
    """The MoSAiC dock on a window of ``size`` (browser docks hidden), the scene as its inputs."""
    iface.mainWindow().setGeometry(0, 0, *size)
    for name in ("Browser", "Browser2"):
        w = iface.mainWindow().findChild(QDockWidget, name)
        if w:
            w.hide()
    dock = plugins["mosaic"].dock
    dock.show()
    dock.raise_()
    dock.optical_combo.setLayer(s2)
    dock.sar_combo.setLayer(s1)
    dock.optical_bands.setText("S2-13")
    dock.output_dir.setFilePath(str(out))
    if labels is not None:
        dock.labels.label_layer_combo.setLayer(labels)
    return dock


def fit_on_screen(layer: QgsMapLayer, screen_height: int = 1000) -> None:
    """The whole layer in the part of the canvas that is on screen: the dock's full height makes
    the window, and so the canvas, taller than the screen."""
    canvas = iface.mapCanvas()
    e = canvas.mapSettings().layerExtentToOutputExtent(layer, layer.extent())
    shown = max(100, min(canvas.height(), screen_height - canvas.mapToGlobal(canvas.rect().topLeft()).y()))
    s = 1.04 * max(e.width() / canvas.width(), e.height() / shown)  # map units per pixel
    cx, y1 = e.center().x(), e.yMaximum() + 0.02 * e.height()
    canvas.setExtent(QgsRectangle(cx - s * canvas.width() / 2, y1 - s * canvas.height(), cx + s * canvas.width() / 2, y1))
    canvas.refresh()
