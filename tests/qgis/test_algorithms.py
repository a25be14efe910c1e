"""mosaic:classify and mosaic:embed through processing.run on the real Spain S1+S2 sample."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import processing
import pytest
import rasterio
from osgeo import gdal
from qgis.core import (
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsProcessingContext,
    QgsProcessingParameterDefinition,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProject,
    QgsRasterLayer,
)
from qgis.PyQt.QtGui import QColor

from .conftest import S2_BANDS_13, S2_PATH

MODEL_CARD = Path(__file__).resolve().parents[2] / "resources" / "models" / "mosaic-small-ben19.json"
CLASSES = [(c["name"], c["color"]) for c in json.loads(MODEL_CARD.read_text())["classes"]]
UTM_30N = "EPSG:32630"  # the local UTM zone of the scene (lon -0.76)


def _group_layers(project: QgsProject, prefix: str) -> tuple[str, list[QgsRasterLayer]]:
    groups = [g for g in project.layerTreeRoot().children() if g.name().startswith(prefix)]
    assert len(groups) == 1, [g.name() for g in project.layerTreeRoot().children()]
    return groups[0].name(), [node.layer() for node in groups[0].findLayers()]


def _check_grid(layer: QgsRasterLayer, source: QgsRasterLayer) -> None:
    """Output in the local UTM zone, covering the input footprint to within one output pixel."""
    assert layer.crs().authid() == UTM_30N
    footprint = QgsCoordinateTransform(source.crs(), layer.crs(), QgsProject.instance()).transformBoundingBox(
        source.extent()
    )
    extent, pixel = layer.extent(), layer.rasterUnitsPerPixelX()
    assert pixel == pytest.approx(160.0)  # 10 m grid, output stride 16
    assert extent.intersect(footprint).area() > 0.95 * footprint.area()
    for out_edge, in_edge in (
        (extent.xMinimum(), footprint.xMinimum()), (extent.xMaximum(), footprint.xMaximum()),
        (extent.yMinimum(), footprint.yMinimum()), (extent.yMaximum(), footprint.yMaximum()),
    ):
        assert abs(out_edge - in_edge) <= pixel


def test_provider_and_algorithm_metadata(mosaic_plugin) -> None:
    from mosaic.core.engine.request import SceneRequest
    from mosaic.core.fewshot.finetune import FinetuneConfig

    registry = QgsApplication.processingRegistry()
    provider = registry.providerById("mosaic")
    assert provider.name() == "MoSAiC" and not provider.icon().isNull()
    assert sorted(a.id() for a in provider.algorithms()) == ["mosaic:classify", "mosaic:embed", "mosaic:finetune"]
    for alg in provider.algorithms():
        assert type(alg.createInstance()) is type(alg)
        assert alg.name() == alg.name().lower() and " " not in alg.name()
        assert alg.displayName() and len(alg.shortHelpString()) > 100
        for param in alg.parameterDefinitions():
            assert param.name() == param.name().upper(), param.name()
            assert param.help(), f"{alg.id()} {param.name()} has no help text"
        assert alg.parameterDefinition("MODEL").defaultValue().endswith("mosaic-small-ben19.json")
        assert alg.parameterDefinition("DEVICE").defaultValue() == "auto"
        # the engine's windows per encoder call; fine-tuning's: patches per training step
        want = FinetuneConfig.batch_size if alg.name() == "finetune" else SceneRequest.batch_size
        assert alg.parameterDefinition("BATCH_SIZE").defaultValue() == want
        ok, message = alg.canExecute()
        assert ok, message


def test_classify_loads_styled_layers_in_one_group(mosaic_plugin, sample_layers, project, tmp_path) -> None:
    s2, s1 = sample_layers
    feedback = QgsProcessingFeedback()
    results = processing.runAndLoadResults(
        "mosaic:classify",
        {
            "OPTICAL": s2, "SAR": s1, "OPTICAL_BANDS": S2_BANDS_13,
            "MODE": 1, "STRIDE": 16,  # dense at the encoder stride: 160 m output pixels
            "PROBABILITIES": str(tmp_path / "probabilities.tif"),
            "DOMINANT": "TEMPORARY_OUTPUT",
            "MULTIHOT": str(tmp_path / "multihot.tif"),
            "UNCERTAINTY": str(tmp_path / "uncertainty.tif"),
        },
        feedback=feedback,
    )
    assert set(results) == {"PROBABILITIES", "DOMINANT", "MULTIHOT", "UNCERTAINTY"}
    for path in results.values():
        assert Path(path).is_file()
        assert Path(path).with_suffix(".qml").is_file()  # styled whenever the file is opened
    group, layers = _group_layers(project, "MoSAiC classify: Spain S2")
    by_name = {layer.name(): layer for layer in layers}
    shown = layers[1].name()  # probabilities: named after the class shown, the one most likely overall
    assert [layer.name() for layer in layers] == ["Dominant class", shown, "Multi-hot classes", "Uncertainty"]
    by_name["Class probabilities"] = by_name[shown]
    for layer in layers:
        _check_grid(layer, s2)

    dominant = by_name["Dominant class"]
    assert dominant.bandCount() == 1
    assert dominant.renderer().type() == "paletted"
    palette = dominant.renderer().classes()
    with rasterio.open(dominant.source()) as ds:  # the legend: the classes the raster holds, in class order
        present = sorted(set(np.unique(ds.read(1)).tolist()) - {255})
    assert 1 <= len(present) < len(CLASSES)
    assert [(c.value, c.label, c.color.name()) for c in palette] == [
        (i, name, QColor(color).name()) for i, (name, color) in enumerate(CLASSES) if i in present
    ]
    assert [label for label, _ in dominant.renderer().legendSymbologyItems()] == [CLASSES[i][0] for i in present]

    probabilities = by_name["Class probabilities"]
    assert probabilities.bandCount() == len(CLASSES) == 19
    renderer = probabilities.renderer()
    assert renderer.type() == "singlebandpseudocolor"
    ds = gdal.Open(results["PROBABILITIES"])
    means = [float(np.ma.masked_equal(ds.GetRasterBand(b).ReadAsArray(), 255).mean()) for b in range(1, 20)]
    ds = None
    band = renderer.usesBands()[0]
    assert band == 1 + int(np.argmax(means)) and shown == f"Class probabilities: {CLASSES[band - 1][0]}"
    items = renderer.shader().rasterShaderFunction().colorRampItemList()
    # uint8 p x 250 with a scale of 0.004 in the file: QGIS reads probabilities 0..1
    assert [(i.value, i.label) for i in items] == [(0.0, "0%"), (0.25, "25%"), (0.5, "50%"), (0.75, "75%"),
                                                    (1.0, "100%")]
    for band, (name, _) in enumerate(CLASSES, start=1):
        assert probabilities.bandName(band).endswith(f": {name}")
    ds = gdal.Open(results["PROBABILITIES"])
    assert [ds.GetRasterBand(i).GetDescription() for i in range(1, 20)] == [n for n, _ in CLASSES]
    ds = None

    multihot = by_name["Multi-hot classes"]
    assert multihot.bandCount() == 1
    # a legend of the class combinations present, from the file's tag: no histogram over the
    # 2**19 possible values is computed and saved beside the file
    ds = gdal.Open(results["MULTIHOT"])
    band = ds.GetRasterBand(1)
    a = band.ReadAsArray()
    present = sorted(int(v) for v in np.unique(a[a != band.GetNoDataValue()]))
    ds = None
    assert multihot.renderer().type() == "paletted" and 0 < len(present) <= 64
    assert [int(c.value) for c in multihot.renderer().classes()] == present
    aux = Path(results["MULTIHOT"] + ".aux.xml")
    assert not aux.exists() or "Histograms" not in aux.read_text()
    assert by_name["Uncertainty"].renderer().type() == "singlebandpseudocolor"
    assert any("optical" in line.lower() or "grid" in line.lower() for line in feedback.textLog().splitlines())


def test_embed_runs_without_loading_and_styles_files(mosaic_plugin, sample_layers, project, tmp_path) -> None:
    """processing.run (no loading) with guessed band names: files only, each with its .qml."""
    s2, s1 = sample_layers
    results = processing.run(
        "mosaic:embed",
        {
            "OPTICAL": s2, "SAR": s1, "CLUSTER_COUNT": 5, "CLUSTER_SAMPLE": 2000, "MODE": 1, "STRIDE": 16,
            "EMBEDDINGS": str(tmp_path / "emb.tif"), "CLUSTERS": str(tmp_path / "clusters.tif"),
        },
    )
    assert project.mapLayers() == {s2.id(): s2, s1.id(): s1}  # processing.run loads nothing
    embeddings = QgsRasterLayer(results["EMBEDDINGS"], "emb")
    clusters = QgsRasterLayer(results["CLUSTERS"], "clusters")
    assert embeddings.isValid() and clusters.isValid()
    _check_grid(embeddings, s2)
    _check_grid(clusters, s2)
    assert embeddings.bandCount() > 3
    assert embeddings.renderer().type() == "multibandcolor"  # from the .qml sidecar
    assert clusters.renderer().type() == "paletted"
    palette = clusters.renderer().classes()
    assert [c.label for c in palette] == [f"Cluster {i}" for i in range(5)]
    assert len({c.color.name() for c in palette}) == 5
    with rasterio.open(results["CLUSTERS"]) as ds:  # QGIS shows the colours the file's table carries
        table = ds.colormap(1)
    assert [c.color.getRgb() for c in palette] == [table[i] for i in range(5)]
    del embeddings, clusters


@pytest.fixture
def context(project) -> QgsProcessingContext:
    ctx = QgsProcessingContext()
    ctx.setProject(project)
    return ctx


@pytest.mark.parametrize(
    ("alg_id", "changes", "message"),
    [
        ("mosaic:classify", {"OPTICAL": None, "SAR": None}, "Choose an optical layer, a SAR layer, or both"),
        ("mosaic:classify", {"DEVICE": "gpu"}, "Device 'gpu' is not understood: use auto, cpu or cuda:N"),
        ("mosaic:classify", {k: None for k in ("PROBABILITIES", "DOMINANT", "MULTIHOT", "UNCERTAINTY")},
         "Choose at least one output"),
        ("mosaic:classify", {"MODEL": "/nowhere/model.json"}, "model card /nowhere/model.json not found"),
        ("mosaic:classify", {"OPTICAL": "SAR_LAYER", "SAR": None}, "The optical layer lacks band(s) B01"),
        ("mosaic:embed", {"CLUSTER_COUNT": 200, "CLUSTER_SAMPLE": 150}, "smaller than the number of clusters (200)"),
    ],
)
def test_invalid_parameters_are_rejected_with_a_message(
    mosaic_plugin, sample_layers, context, alg_id, changes, message
) -> None:
    s2, s1 = sample_layers
    alg = QgsApplication.processingRegistry().createAlgorithmById(alg_id)
    params = {"OPTICAL": s2.id(), "SAR": s1.id()}
    params.update({k: (s1.id() if v == "SAR_LAYER" else v) for k, v in changes.items()})
    params = {k: v for k, v in params.items() if v is not None or k not in ("OPTICAL", "SAR")}
    ok, text = alg.checkParameterValues(params, context)
    assert not ok
    assert message in text
    with pytest.raises(QgsProcessingException, match="Unable to execute algorithm"):
        processing.run(alg_id, params, context=context, feedback=QgsProcessingFeedback())


def test_wgs84_extent_limits_the_output(mosaic_plugin, sample_layers, project, tmp_path) -> None:
    """An extent in another CRS (EPSG:4326) crops the output grid."""
    s2, _ = sample_layers
    full = s2.extent()
    west_half = f"{full.xMinimum()},{full.center().x()},{full.yMinimum()},{full.yMaximum()} [EPSG:4326]"
    results = processing.run(
        "mosaic:classify",
        {"OPTICAL": s2, "OPTICAL_BANDS": "S2-13", "EXTENT": west_half, "DOMINANT": str(tmp_path / "d.tif"),
         "PROBABILITIES": None},
    )
    assert set(results) == {"DOMINANT"}
    layer = QgsRasterLayer(results["DOMINANT"], "d")
    half = QgsCoordinateTransform(
        QgsCoordinateReferenceSystem("EPSG:4326"), layer.crs(), QgsProject.instance()
    ).transformBoundingBox(s2.extent())
    assert layer.extent().width() < 0.6 * half.width()
    del layer


def test_jp2_band_files_are_decoded_once_and_the_log_says_so(mosaic_plugin, project, tmp_path) -> None:
    """A VRT of the real USA L1C JPEG 2000 band files: staged by default, read as is with 'never'."""
    from mosaic.core.engine.align import build_band_vrt

    bands = sorted(str(p) for p in (Path(__file__).resolve().parents[1] / "data" / "s2-l1c-usa").glob("s2_B*.jp2"))
    vrt = build_band_vrt(bands, str(tmp_path / "usa.vrt"))
    alg = QgsApplication.processingRegistry().algorithmById("mosaic:classify")
    stage = alg.parameterDefinition("STAGE")
    assert stage.options() == ["auto", "always", "never"] and stage.defaultValue() == 0
    assert stage.flags() & QgsProcessingParameterDefinition.FlagAdvanced
    usa = "B01,B02,B03,B04,B05,B06,B07,B08,B09,-,B11,B12,B8A"
    logs = {}
    for option in (0, 2):
        feedback = QgsProcessingFeedback()
        out = tmp_path / f"d{option}.tif"
        processing.run("mosaic:classify", {"OPTICAL": vrt, "OPTICAL_BANDS": usa, "STAGE": option, "STRIDE": 16,
                                           "DOMINANT": str(out), "PROBABILITIES": None}, feedback=feedback)
        logs[option] = feedback.textLog()
        assert out.is_file() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert "optical input (JPEG 2000 band files) was decoded once" in logs[0]
    assert "decoded once" not in logs[2]


def test_a_file_that_is_not_a_raster_is_named_as_such(mosaic_plugin, sample_layers, context, tmp_path) -> None:
    """QGIS alone says "not found" of a file it cannot load; the algorithm says what it is."""
    notes = tmp_path / "notes.tif"
    notes.write_text("not a raster")
    alg = QgsApplication.processingRegistry().createAlgorithmById("mosaic:classify")
    ok, text = alg.checkParameterValues({"OPTICAL": str(notes), "DOMINANT": str(tmp_path / "d.tif")}, context)
    assert not ok and f"{notes} exists but is not a raster GDAL can read" in text


def test_an_output_over_an_input_is_refused_and_the_input_kept(mosaic_plugin, project, context, tmp_path) -> None:
    """Processing runs the engine's check: the input is still the scene afterwards."""
    import shutil

    copy = tmp_path / "s2.tif"
    shutil.copy(S2_PATH, copy)
    before = copy.read_bytes()
    layer = QgsRasterLayer(str(copy), "S2 copy", "gdal")
    project.addMapLayer(layer)
    with pytest.raises(QgsProcessingException, match="would destroy an input"):
        processing.run("mosaic:classify", {"OPTICAL": layer.id(), "OPTICAL_BANDS": "S2-13", "DOMINANT": str(copy),
                                           "PROBABILITIES": None}, context=context, feedback=QgsProcessingFeedback())
    assert copy.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s2.tif"]
