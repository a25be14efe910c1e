"""mosaic:finetune through processing.run on the real Spain sample, then classify again
with the new model; clear errors for bad labels."""

from __future__ import annotations

import json
from pathlib import Path

import processing
import pytest
from osgeo import gdal
from qgis.core import (
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsGeometry,
    QgsProcessingException,
    QgsRectangle,
    QgsVectorLayer,
)

from mosaic.mosaic_qgis.labels import add_labelled_polygon, create_label_layer, foreign_edits, qt_field

from .conftest import S2_BANDS_13

CORNERS = [(-0.775 + 0.009 * (i % 4), 38.09 + 0.009 * (i // 4)) for i in range(8)]
LABELS = [["Arable land"], ["Orchards"], ["Arable land", "Orchards"], ["Urban fabric"]]


def square(x: float, y: float, d: float = 0.003) -> QgsGeometry:
    return QgsGeometry.fromRect(QgsRectangle(x, y, x + d, y + d))


def training_areas(labels=None, field: str = "klass", sep: str = ",", shift: float = 0.0) -> QgsVectorLayer:
    """A memory layer of training areas with its own field name and separator (not a MoSAiC layer)."""
    layer = QgsVectorLayer("Polygon?crs=EPSG:4326", "training areas", "memory")
    layer.dataProvider().addAttributes([qt_field(field, "QString")])
    layer.updateFields()
    feats = []
    for (x, y), names in zip(CORNERS, labels or LABELS * 2):
        f = QgsFeature(layer.fields())
        f.setGeometry(square(x + shift, y))
        f[field] = sep.join(names)
        feats.append(f)
    layer.dataProvider().addFeatures(feats)
    return layer


def params(s2, s1, labels, tmp_path, **extra) -> dict:
    return {"OPTICAL": s2, "SAR": s1, "OPTICAL_BANDS": S2_BANDS_13, "LABELS": labels, "EPOCHS": 1,
            "WINDOWS_PER_POLYGON": 2, "UNLABELLED": 8, "THREADS": 2, "FOLDER": str(tmp_path),
            "NAME": "spain-ft", **extra}


def test_finetune_then_classify_again(mosaic_plugin, sample_layers, project, tmp_path) -> None:
    alg = QgsApplication.processingRegistry().algorithmById("mosaic:finetune")
    assert alg is not None and alg.group() == "Training"
    s2, s1 = sample_layers
    layer = create_label_layer(tmp_path / "labels.gpkg", QgsCoordinateReferenceSystem("EPSG:4326"))
    for (x, y), names in zip(CORNERS, LABELS * 2):
        assert add_labelled_polygon(layer, square(x, y), names)
    assert layer.commitChanges()
    project.addMapLayer(layer)
    results = processing.run("mosaic:finetune", params(s2, s1, layer, tmp_path, LABEL_FIELD="labels"))
    card_path = Path(results["OUTPUT_MODEL"])
    assert card_path == tmp_path / "spain-ft.json" and card_path.with_suffix(".safetensors").is_file()
    assert Path(results["OUTPUT_REPORT"]).is_file() and Path(results["OUTPUT_IMAGE"]).stat().st_size > 10_000
    card = json.loads(card_path.read_text())
    assert [c["name"] for c in card["classes"]][-1] == "Orchards" and len(card["classes"]) == 20
    assert card["training"]["labels"]["field"] == "labels" and card["training"]["base_model"]["name"] == "mosaic-small-ben19"
    assert card["metrics"]["validation"]["metrics"]["n_samples"] > 0
    out = processing.run("mosaic:classify", {"OPTICAL": s2, "SAR": s1, "OPTICAL_BANDS": S2_BANDS_13,
                                             "MODEL": str(card_path), "PROBABILITIES": str(tmp_path / "p.tif"),
                                             "DOMINANT": str(tmp_path / "d.tif")})
    ds = gdal.Open(out["PROBABILITIES"])
    assert ds.RasterCount == 20 and ds.GetRasterBand(20).GetDescription() == "Orchards"
    ds = None
    # the new model maps per pixel: fine outputs on the 10 m grid, styled with the polygons' classes
    assert [c["name"] for c in card["pixel_classes"]] == ["Urban fabric", "Arable land", "Orchards"]
    assert card["metrics"]["pixel_cross_validation"]["polygons"] == 8
    fine = processing.run("mosaic:classify", {"OPTICAL": s2, "SAR": s1, "OPTICAL_BANDS": S2_BANDS_13,
                                              "MODEL": str(card_path), "FINE_CLASSES": str(tmp_path / "fc.tif"),
                                              "FINE_UNCERTAINTY": str(tmp_path / "fu.tif")})
    assert {"FINE_CLASSES", "FINE_UNCERTAINTY"} <= set(fine)  # beside the outputs made by default
    ds = gdal.Open(fine["FINE_CLASSES"])
    assert ds.RasterXSize == 417 and ds.GetGeoTransform()[1] == 10.0
    ds = None
    qml = (tmp_path / "fc.qml").read_text()
    assert "paletted" in qml and ("Orchards" in qml or "Arable land" in qml) and "Mixed forest" not in qml
    with pytest.raises(QgsProcessingException, match="no pixel head"):
        processing.run("mosaic:classify", {"OPTICAL": s2, "OPTICAL_BANDS": S2_BANDS_13,
                                           "FINE_CLASSES": str(tmp_path / "x.tif")})
    assert not (tmp_path / "x.tif").exists()


def test_any_layer_with_a_label_field_works(mosaic_plugin, sample_layers, tmp_path) -> None:
    s2, s1 = sample_layers
    results = processing.run("mosaic:finetune", params(s2, None, training_areas(), tmp_path, LABEL_FIELD="klass",
                                                       SEPARATOR=",", UNLABELLED=0, VAL_SHARE=0.0))
    card = json.loads(Path(results["OUTPUT_MODEL"]).read_text())
    assert card["training"]["labels"]["separator"] == "," and card["training"]["new_classes"] == ["Orchards"]
    assert card["metrics"]["validation"]["metrics"] is None  # nothing held out


@pytest.mark.parametrize("kwargs, message", [
    ({"shift": 5.0}, "no polygon overlaps"),
    ({"labels": [[""]] * 8}, "name no class"),
    ({"labels": [["Arable land"]] * 1 + [[""]] * 0}, "at least 4 needed"),
])
def test_clear_errors(mosaic_plugin, sample_layers, tmp_path, kwargs, message) -> None:
    s2, s1 = sample_layers
    layer = training_areas(**kwargs)
    with pytest.raises(QgsProcessingException, match=message):
        processing.run("mosaic:finetune", params(s2, s1, layer, tmp_path, LABEL_FIELD="klass", SEPARATOR=",",
                                                 WINDOWS_PER_POLYGON=1))
    assert not list(tmp_path.glob("*.json"))


def _dock_with_drawn_polygons(mosaic_plugin, sample_layers, project, path: Path):
    """(the dock, a new label layer at ``path`` with 8 polygons drawn but not saved), the scene as inputs."""
    s2, s1 = sample_layers
    layer = create_label_layer(path, QgsCoordinateReferenceSystem("EPSG:4326"))
    project.addMapLayer(layer)
    for (x, y), names in zip(CORNERS, LABELS * 2):
        assert add_labelled_polygon(layer, square(x, y), names)
    dock = mosaic_plugin.dock
    dock.optical_combo.setLayer(s2)
    dock.sar_combo.setLayer(s1)
    dock.labels.label_layer_combo.setLayer(layer)
    dock.labels.label_field_combo.setField("labels")
    return dock, layer


def test_drawn_polygons_are_on_disk_before_the_model_describes_them(mosaic_plugin, sample_layers, project,
                                                                     qgis_iface, tmp_path) -> None:
    """Polygons drawn in the dock stay in the layer's edit buffer; fine-tuning saves them first
    (the layer stays editable), so the card's label counts describe the GeoPackage."""
    path = tmp_path / "labels.gpkg"
    dock, layer = _dock_with_drawn_polygons(mosaic_plugin, sample_layers, project, path)
    on_disk = lambda: QgsVectorLayer(str(path), "check", "ogr").featureCount()  # noqa: E731
    assert layer.isModified() and on_disk() == 0
    arguments = dock.build_finetune()
    assert on_disk() == 8 and len(arguments["polygons"]) == 8
    assert layer.isEditable() and not layer.isModified()
    layer.rollBack()


def test_edits_made_outside_the_tool_are_saved_only_when_the_analyst_says_so(
        mosaic_plugin, sample_layers, project, monkeypatch, tmp_path) -> None:
    """Saving before fine-tuning would save a deletion the analyst made by hand too: they are asked
    (no: nothing saved, nothing started); the tool's own polygons never need asking."""
    path = tmp_path / "labels.gpkg"
    dock, layer = _dock_with_drawn_polygons(mosaic_plugin, sample_layers, project, path)
    assert foreign_edits(layer) == []  # only the tool's polygons: saved without a question
    layer.beginEditCommand("Delete feature")  # what QGIS's own delete tool records
    layer.deleteFeature(next(layer.getFeatures()).id())
    layer.endEditCommand()
    assert foreign_edits(layer) == ["Delete feature"]
    asked = []
    monkeypatch.setattr(dock, "_confirm", lambda title, text: asked.append(text) or False)
    assert dock.start_finetune() is None and dock.finetune_task is None
    assert "1 unsaved edit(s) made outside the labelling tool (Delete feature)" in asked[0]
    assert layer.isModified() and QgsVectorLayer(str(path), "check", "ogr").featureCount() == 0
    assert "Not started" in dock.status.text()
    layer.rollBack()
