"""The labelling tool: polygons drawn through the map tool API, labelled from the dock's
class list, stored in a GeoPackage (undo works, survives save and reopen), then fine-tuning
from the dock as a task; the new model is listed at once."""

from __future__ import annotations

import json

import pytest
from qgis.core import Qgis, QgsCoordinateReferenceSystem, QgsPointXY

from mosaic.mosaic_qgis.labels import create_label_layer, read_scheme

TIMEOUT_MS = 180_000
# (lon, lat) lower-left corners inside the Spain scene (lon -0.782..-0.736, lat 38.083..38.129)
CORNERS = [(-0.775 + 0.009 * (i % 4), 38.09 + 0.009 * (i // 4)) for i in range(8)]
LABELS = [["Arable land"], ["Orchards"], ["Arable land", "Orchards"], ["Urban fabric"]]


@pytest.fixture
def dock(mosaic_plugin, qgis_iface, qgis_canvas):
    dock = mosaic_plugin.dock
    qgis_canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:4326"))
    qgis_iface.messageBar().clear_messages()
    yield dock
    dock.labels.draw_button.setChecked(False)
    dock.labels.pick_button.setChecked(False)
    dock.labels.label_layer_combo.setLayer(None)
    dock.labels._extra_classes.clear()
    assert dock.task is None and dock.finetune_task is None


def draw(dock, x: float, y: float, d: float = 0.003) -> None:
    tool = dock.labels.label_tool
    for px, py in ((x, y), (x + d, y), (x + d, y + d), (x, y + d)):
        tool.add_vertex(QgsPointXY(px, py))
    assert tool.finish() is not None


def test_draw_label_undo_and_reopen(dock, project, qgis_canvas, tmp_path) -> None:
    layer = create_label_layer(tmp_path / "labels.gpkg", QgsCoordinateReferenceSystem("EPSG:3857"))
    project.addMapLayer(layer)
    dock.labels.label_layer_combo.setLayer(layer)
    assert dock.labels.label_field_combo.currentField() == "labels"
    assert dock.labels.label_class_list.count() == 19  # the model's classes
    dock.labels.add_label_class("Orchards")
    assert read_scheme(layer)[0][0] == "Orchards" and dock.labels.checked_classes() == ["Orchards"]
    dock.labels.draw_button.setChecked(True)
    assert qgis_canvas.mapTool() is dock.labels.label_tool and dock.labels.label_tool.mode == "draw"
    dock.labels.set_checked_classes([])
    draw(dock, *CORNERS[0])
    assert layer.featureCount() == 0  # no class ticked: nothing stored
    dock.labels.set_checked_classes(["Arable land", "Orchards"])
    draw(dock, *CORNERS[0])
    dock.labels.set_checked_classes(["Urban fabric"])
    draw(dock, *CORNERS[1])
    assert layer.featureCount() == 2
    dock.labels.undo_label()
    assert layer.featureCount() == 1
    feature = next(layer.getFeatures())
    assert feature["labels"] == "Arable land;Orchards" and not feature["created"].isNull()
    assert feature.geometry().boundingBox().xMinimum() < -80000  # stored in EPSG:3857 (metres)
    # pick an existing polygon and relabel it
    dock.labels.pick_button.setChecked(True)
    assert not dock.labels.draw_button.isChecked() and dock.labels.label_tool.mode == "pick"
    dock.labels.set_checked_classes(["Pastures"])
    x, y = CORNERS[0]
    assert dock.labels.label_tool.pick(QgsPointXY(x + 0.0015, y + 0.0015)) == feature.id()
    assert next(layer.getFeatures())["labels"] == "Pastures"
    assert layer.commitChanges()
    project.write(str(tmp_path / "project.qgz"))
    project.clear()
    assert project.read(str(tmp_path / "project.qgz"))
    reopened = project.mapLayersByName("MoSAiC labels")[0]
    assert reopened.featureCount() == 1 and next(reopened.getFeatures())["labels"] == "Pastures"
    assert read_scheme(reopened) == [("Orchards", read_scheme(reopened)[0][1])]


def test_finetune_from_the_dock_lists_the_new_model(dock, sample_layers, project, qtbot, qgis_iface, tmp_path,
                                                      monkeypatch) -> None:
    import mosaic.mosaic_qgis.dock as dock_module

    monkeypatch.setattr(dock_module, "user_models_dir", lambda: tmp_path / "models")
    monkeypatch.setattr("mosaic.mosaic_qgis.models.user_models_dir", lambda: tmp_path / "models")
    s2, s1 = sample_layers
    dock.optical_combo.setLayer(s2)
    dock.sar_combo.setLayer(s1)
    dock.optical_bands.setText("S2-13")
    layer = dock.labels.new_label_layer(str(tmp_path / "drawn.gpkg"))
    assert layer is not None and project.mapLayer(layer.id()) is layer
    dock.labels.add_label_class("Orchards")
    dock.labels.draw_button.setChecked(True)
    for corner, labels in zip(CORNERS, LABELS * 2):
        dock.labels.set_checked_classes(labels)
        draw(dock, *corner)
    assert layer.featureCount() == 8
    dock.labels.epochs_spin.setValue(1)
    dock.finetune_options = {"windows_per_polygon": 2, "unlabelled": 8, "threads": 2}
    task = dock.start_finetune()
    assert task is not None and not dock.labels.finetune_button.isEnabled()
    qtbot.waitUntil(lambda: dock.finetune_task is None, timeout=TIMEOUT_MS)
    assert task.error == "" and not task.cancelled, task.error
    info = dock.current_model()
    assert info.name.startswith("mosaic-small-ben19-ft-") and info.class_names[-1] == "Orchards"
    card = json.loads((tmp_path / "models" / f"{info.name}.json").read_text())
    assert card["training"]["labels"]["layer"] == "drawn" and len(card["training"]["labels"]["hash"]) == 64
    assert any("Fine-tuned model" in m for m in qgis_iface.messageBar().get_messages(Qgis.Success))
    dock.labels.draw_button.setChecked(False)
    dock.finetune_options = {}
    dock.reload_models()


def test_finetune_without_labels_says_what_to_do(dock, sample_layers, qgis_iface) -> None:
    s2, s1 = sample_layers
    dock.optical_combo.setLayer(s2)
    dock.labels.label_layer_combo.setLayer(None)
    assert dock.start_finetune() is None
    assert any("label layer" in m for m in qgis_iface.messageBar().get_messages(Qgis.Critical))
