"""`make demo`: map the bundled Spain S1+S2 scene through QGIS, as an analyst would.

Runs headless (QT_QPA_PLATFORM=offscreen): starts QgsApplication, loads the plugin as QGIS
does, and through Processing
1. runs ``mosaic:classify`` with the bundled model (window outputs: the BigEarthNet classes of
   the 1.2 km window around each 160 m cell), and
2. fine-tunes it on the hand-drawn polygons of the scene (``mosaic:finetune``,
   resources/sample/labels/spain_polygons.geojson), then runs ``mosaic:classify`` with the new
   model's fine outputs: one class per 10 m pixel.
Writes the rasters (each with its .qml style), the new model with its report, and PNG maps of
both over the Sentinel-2 true colour with a legend of the classes present. Prints where
everything is and the new model's cross-validated figures.

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
LABELS = REPO / "resources" / "sample" / "labels" / "spain_polygons.geojson"
DATA_CREDIT = "Contains modified Copernicus Sentinel data 2019 (Sen1Floods11, Bonafilia et al. 2020, CC BY 4.0)."
ATTRIBUTION = f"{DATA_CREDIT} Model: mosaic-small-ben19 (BigEarthNet 19 classes)."


def plugin_on_path() -> Path:
    """Import the repository as the package ``mosaic``, as QGIS installs it."""
    parent = Path(tempfile.mkdtemp(prefix="mosaic-demo-"))
    (parent / "mosaic").symlink_to(REPO, target_is_directory=True)
    sys.path.insert(0, str(parent))
    return parent


def render_map(dominant_path: str, png: Path, classes, heading: str, legend_title: str,
               credit: str = ATTRIBUTION) -> list[str]:
    """A PNG of a class raster over the S2 true colour, with a legend; returns the classes shown."""
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
        QgsPalettedRasterRenderer,
        QgsPrintLayout,
        QgsProject,
        QgsRasterLayer,
        QgsUnitTypes,
    )
    from qgis.PyQt.QtCore import QSize, Qt
    from qgis.PyQt.QtGui import QColor, QFont

    from mosaic.mosaic_qgis.styling import paletted_renderer, true_colour_renderer

    project = QgsProject.instance()
    base = QgsRasterLayer(str(S2), "Sentinel-2 true colour (B4, B3, B2)", "gdal")
    base.setRenderer(true_colour_renderer(base))
    dominant = QgsRasterLayer(dominant_path, legend_title, "gdal")
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
    title.setText(heading)
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
    legend.setTitle(legend_title)
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
    note.setText(credit)
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
            # dense (what "auto" picks) at its default 160 m stride: the 1.2 km window around each cell
            "mosaic:classify", {"OPTICAL": str(S2), "SAR": str(S1), "DEVICE": args.device, "MODE": 0,
                                **outputs},
            feedback=feedback,
        )
        seconds = time.perf_counter() - t
        _print_log(feedback)
        info = read_model_info(default_model_path())
        png = out / "spain_dominant_map.png"
        shown = render_map(results["DOMINANT"], png, info.classes,
                           "MoSAiC window map (bundled model) - Vega Baja del Segura, Spain (S1 + S2, Sept. 2019)",
                           "Dominant class")
        print(f"\nwindow map in {seconds:.1f} s; classes on it: {', '.join(shown)}")

        print(f"\nfine-tuning on the {LABELS.name} polygons with mosaic:finetune")
        feedback = QgsProcessingFeedback()
        t = time.perf_counter()
        tuned = processing.run("mosaic:finetune", {
            "OPTICAL": str(S2), "SAR": str(S1), "LABELS": str(LABELS), "LABEL_FIELD": "labels", "SEPARATOR": ";",
            "DEVICE": args.device, "NAME": "spain-demo", "FOLDER": str(out)}, feedback=feedback)
        tune_seconds = time.perf_counter() - t
        _print_log(feedback)
        fine_outputs = {key: str(out / f"spain_{key.lower()}.tif") for key in ("FINE_CLASSES", "FINE_UNCERTAINTY")}
        t = time.perf_counter()
        fine = processing.run("mosaic:classify", {"OPTICAL": str(S2), "SAR": str(S1), "DEVICE": args.device,
                                                  "MODEL": tuned["OUTPUT_MODEL"], "PROBABILITIES": None,
                                                  "DOMINANT": None, **fine_outputs})
        fine_seconds = time.perf_counter() - t
        tuned_info = read_model_info(tuned["OUTPUT_MODEL"])
        fine_png = out / "spain_fine_map.png"
        fine_shown = render_map(fine["FINE_CLASSES"], fine_png, tuned_info.pixel_classes,
                                "MoSAiC fine map (10 m) from 43 drawn polygons - Vega Baja del Segura, Spain",
                                "Fine class", f"{DATA_CREDIT} Model: mosaic-small-ben19 fine-tuned on the "
                                f"polygons of {LABELS.name} (pixel head, 20 m stage + bands).")
    finally:
        plugin.unload()
        app.exitQgis()
        shutil.rmtree(parent, ignore_errors=True)
    print(f"\nwindow outputs (GeoTIFF + .qml style each), {seconds:.1f} s:")
    for key, path in results.items():
        print(f"  {key.lower():16s} {path}")
    print(f"  map (PNG)        {png}")
    print(f"fine-tuned model in {tune_seconds:.1f} s: {tuned['OUTPUT_MODEL']}")
    print(f"  report           {tuned['OUTPUT_REPORT']}")
    print(f"fine outputs, {fine_seconds:.1f} s:")
    for key, path in fine.items():
        if key in fine_outputs:
            print(f"  {key.lower():16s} {path}")
    print(f"  map (PNG)        {fine_png}")
    print(f"classes on the fine map: {', '.join(fine_shown)}")
    print(
        "same jobs from the shell: python -m core finetune --optical S2.tif --sar S1.tif --labels polygons.gpkg "
        "--out models/my-area; python -m core classify --model models/my-area --optical S2.tif --sar S1.tif "
        "--fine-classes map.tif"
    )
    return 0


def _print_log(feedback) -> None:
    for line in feedback.textLog().splitlines():
        if line.strip():
            print(f"  {line}")


if __name__ == "__main__":
    sys.exit(main())
