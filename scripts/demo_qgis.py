"""`make demo`: classify the bundled Spain S1+S2 scene through QGIS and draw a map of it.

Runs headless (QT_QPA_PLATFORM=offscreen): starts QgsApplication, loads the plugin as QGIS
does, runs ``mosaic:classify`` through Processing with the bundled model, writes the four
output rasters (each with its .qml style), and renders a PNG map of the dominant class over
the Sentinel-2 true colour with a legend of the classes present. Prints where everything is.

    .venv/bin/python scripts/demo_qgis.py [--out outputs/demo-qgis] [--device auto]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "resources" / "sample" / "spain"
S2 = SAMPLE / "Spain_7370579_S2Hand.tif"
S1 = SAMPLE / "Spain_7370579_S1Hand.tif"
ATTRIBUTION = (
    "Contains modified Copernicus Sentinel data 2019 (Sen1Floods11, Bonafilia et al. 2020, CC BY 4.0). "
    "Model: mosaic-small-ben19 (BigEarthNet 19 classes)."
)


def plugin_on_path() -> Path:
    """Import the repository as the package ``mosaic``, as QGIS installs it."""
    parent = Path(tempfile.mkdtemp(prefix="mosaic-demo-"))
    (parent / "mosaic").symlink_to(REPO, target_is_directory=True)
    sys.path.insert(0, str(parent))
    return parent


def render_map(dominant_path: str, png: Path, classes) -> list[str]:
    """A PNG of the dominant class over the S2 true colour, with a legend; returns the classes shown."""
    from qgis.core import (
        QgsLayoutExporter,
        QgsLayoutItemLabel,
        QgsLayoutItemLegend,
        QgsLayoutItemMap,
        QgsLayoutItemScaleBar,
        QgsLayoutPoint,
        QgsLayoutSize,
        QgsLegendRenderer,
        QgsLegendStyle,
        QgsMapLayerLegendUtils,
        QgsMultiBandColorRenderer,
        QgsContrastEnhancement,
        QgsPalettedRasterRenderer,
        QgsPrintLayout,
        QgsProject,
        QgsRasterLayer,
        QgsUnitTypes,
    )
    from qgis.PyQt.QtCore import QSize, Qt
    from qgis.PyQt.QtGui import QColor, QFont

    from mosaic.mosaic_qgis.styling import paletted_renderer

    project = QgsProject.instance()
    base = QgsRasterLayer(str(S2), "Sentinel-2 true colour (B4, B3, B2)", "gdal")
    renderer = QgsMultiBandColorRenderer(base.dataProvider(), 4, 3, 2)
    for setter in (renderer.setRedContrastEnhancement, renderer.setGreenContrastEnhancement,
                   renderer.setBlueContrastEnhancement):
        enhancement = QgsContrastEnhancement(base.dataProvider().dataType(4))
        enhancement.setContrastEnhancementAlgorithm(QgsContrastEnhancement.StretchToMinimumMaximum)
        enhancement.setMinimumValue(300)
        enhancement.setMaximumValue(2500)
        setter(enhancement)
    base.setRenderer(renderer)
    dominant = QgsRasterLayer(dominant_path, "Dominant class", "gdal")
    present = sorted(int(c.value) for c in QgsPalettedRasterRenderer.classDataFromRaster(dominant.dataProvider(), 1))
    present = [v for v in present if 0 <= v < len(classes)]
    dominant.setRenderer(paletted_renderer(dominant, ((v, QColor(classes[v][1]), classes[v][0]) for v in present)))
    dominant.setOpacity(0.7)
    project.addMapLayers([base, dominant])
    project.setCrs(dominant.crs())

    layout = QgsPrintLayout(project)
    layout.initializeDefaults()
    page = layout.pageCollection().page(0)
    page.setPageSize(QgsLayoutSize(297, 190, QgsUnitTypes.LayoutMillimeters))
    title = QgsLayoutItemLabel(layout)
    title.setText("MoSAiC dominant land-cover class - Vega Baja del Segura, Spain (S1 + S2, Sept. 2019)")
    title.setFont(QFont("DejaVu Sans", 14, QFont.Bold))
    title.attemptMove(QgsLayoutPoint(8, 5, QgsUnitTypes.LayoutMillimeters))
    title.attemptResize(QgsLayoutSize(280, 10, QgsUnitTypes.LayoutMillimeters))
    layout.addLayoutItem(title)
    extent = dominant.extent()
    map_h = 158.0
    map_w = map_h * extent.width() / extent.height()
    map_item = QgsLayoutItemMap(layout)
    map_item.attemptMove(QgsLayoutPoint(8, 17, QgsUnitTypes.LayoutMillimeters))
    map_item.attemptResize(QgsLayoutSize(map_w, map_h, QgsUnitTypes.LayoutMillimeters))
    map_item.setCrs(dominant.crs())
    map_item.setLayers([dominant, base])
    map_item.setFrameEnabled(True)
    layout.addLayoutItem(map_item)
    map_item.setExtent(extent)  # (zoomToExtent leaves a new map item empty in QGIS 3.22)
    legend = QgsLayoutItemLegend(layout)
    legend.setTitle("Dominant class")
    legend.setLinkedMap(map_item)
    legend.setAutoUpdateModel(False)
    root = legend.model().rootGroup()
    root.clear()
    node = root.addLayer(dominant)
    QgsLegendRenderer.setNodeLegendStyle(node, QgsLegendStyle.Hidden)  # the legend title says it
    nodes = legend.model().layerLegendNodes(node)
    keep = [i for i, n in enumerate(nodes) if n.data(Qt.DisplayRole) in {c[0] for c in classes}]
    QgsMapLayerLegendUtils.setLegendNodeOrder(node, keep)  # classes only, no band-name line
    legend.model().refreshLayerLegend(node)
    legend.attemptMove(QgsLayoutPoint(14 + map_w, 17, QgsUnitTypes.LayoutMillimeters))
    legend.setColumnCount(1)
    legend.setWrapString("|")
    layout.addLayoutItem(legend)
    scalebar = QgsLayoutItemScaleBar(layout)
    scalebar.setStyle("Single Box")
    scalebar.setLinkedMap(map_item)
    scalebar.setUnits(QgsUnitTypes.DistanceKilometers)
    scalebar.setUnitLabel("km")
    scalebar.setNumberOfSegments(2)
    scalebar.setNumberOfSegmentsLeft(0)
    scalebar.setUnitsPerSegment(1.0)
    scalebar.attemptMove(QgsLayoutPoint(12, 160, QgsUnitTypes.LayoutMillimeters))
    layout.addLayoutItem(scalebar)
    note = QgsLayoutItemLabel(layout)
    note.setText(ATTRIBUTION)
    note.setFont(QFont("DejaVu Sans", 7))
    note.attemptMove(QgsLayoutPoint(8, 180, QgsUnitTypes.LayoutMillimeters))
    note.attemptResize(QgsLayoutSize(280, 8, QgsUnitTypes.LayoutMillimeters))
    layout.addLayoutItem(note)
    # rendered to an image and saved by Qt: exportToImage would reopen the PNG through GDAL to
    # georeference it, which the PNG driver refuses ('ERROR 6' on the console)
    image = QgsLayoutExporter(layout).renderPageToImage(0, QSize(), 120)
    if image.isNull() or not image.save(str(png), "PNG"):
        raise RuntimeError(f"could not write {png}")
    del layout
    project.removeAllMapLayers()
    return [classes[v][0] for v in present]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "outputs" / "demo-qgis"), help="output folder")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda:N")
    args = parser.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    parent = plugin_on_path()

    from qgis.core import Qgis, QgsApplication, QgsProcessingFeedback

    app = QgsApplication([], False)
    app.initQgis()
    sys.path.append(os.path.join(QgsApplication.pkgDataPath(), "python", "plugins"))
    from processing.core.Processing import Processing

    Processing.initialize()
    import processing

    import mosaic
    from mosaic.mosaic_qgis.models import default_model_path, read_model_info

    plugin = mosaic.classFactory(None)
    plugin.initProcessing()
    try:
        feedback = QgsProcessingFeedback()
        outputs = {key: str(out / f"spain_{key.lower()}.tif")
                   for key in ("PROBABILITIES", "DOMINANT", "MULTIHOT", "UNCERTAINTY")}
        print(f"MoSAiC QGIS demo: classifying {S2.name} + {S1.name} with mosaic:classify (QGIS {Qgis.QGIS_VERSION})")
        t = time.perf_counter()
        results = processing.run(
            # dense (what "auto" picks) at its default 160 m stride: a map fine enough to read on a
            # 4 x 5 km scene
            "mosaic:classify", {"OPTICAL": str(S2), "SAR": str(S1), "DEVICE": args.device, "MODE": 0,
                                **outputs},
            feedback=feedback,
        )
        seconds = time.perf_counter() - t
        for line in feedback.textLog().splitlines():
            if line.strip():
                print(f"  {line}")
        info = read_model_info(default_model_path())
        png = out / "spain_dominant_map.png"
        shown = render_map(results["DOMINANT"], png, info.classes)
    finally:
        plugin.unload()
        app.exitQgis()
        shutil.rmtree(parent, ignore_errors=True)
    print(f"\nclassified in {seconds:.1f} s; outputs (GeoTIFF + .qml style each):")
    for key, path in results.items():
        print(f"  {key.lower():14s} {path}")
    print(f"  map (PNG)      {png}")
    print(f"classes on the map: {', '.join(shown)}")
    print(
        "same job from the shell: qgis_process run mosaic:classify -- "
        f"OPTICAL={S2} SAR={S1} DOMINANT=dominant.tif (plugin installed and enabled)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
