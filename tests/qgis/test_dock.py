"""The dock panel driven with qtbot: choose layers, run, cancel; errors in the message bar."""

from __future__ import annotations

from pathlib import Path

import pytest
from qgis.core import Qgis, QgsApplication, QgsTask

TIMEOUT_MS = 120_000


@pytest.fixture
def dock(mosaic_plugin, qgis_iface, tmp_path):
    dock = mosaic_plugin.dock
    assert dock is not None and dock.objectName() == "MosaicDock"
    dock.output_dir.setFilePath(str(tmp_path / "out"))
    dock.optical_bands.clear()
    dock.sar_bands.clear()
    dock.extent_check.setChecked(False)
    qgis_iface.messageBar().clear_messages()
    yield dock
    assert dock.task is None


def test_dock_lists_models_with_classes_and_bands(dock, sample_layers) -> None:
    assert dock.model_combo.count() >= 1
    assert dock.model_combo.itemText(0) == "mosaic-small-ben19 (bundled)"
    assert dock.class_list.count() == 19
    assert dock.class_list.item(0).text() == "Urban fabric"
    assert "B01 B02" in dock.model_bands.text() and "VV VH" in dock.model_bands.text()
    s2, s1 = sample_layers
    dock.optical_combo.setLayer(s2)  # raster layers only: the combo's filter
    assert dock.optical_combo.currentLayer() is s2
    # the mapping the engine will use is shown before a run: B10 is not a model band
    assert dock.optical_bands.placeholderText() == "from band descriptions: 12 bands, B10 unused"
    assert "Read from the band descriptions: B01,B02,B03,B04,B05,B06,B07,B08,B8A,B09,-,B11,B12" in \
        dock.optical_bands.toolTip()
    assert dock.optical_band_warning.isHidden()  # named bands: nothing to confirm
    assert "Band 11" in dock.optical_bands.toolTip()
    dock.sar_combo.setLayer(s1)
    assert dock.sar_bands.placeholderText() == "from band descriptions: VV,VH"
    dock.sar_combo.setLayer(s2)  # 13 optical bands as SAR: none is VV or VH
    assert dock.sar_bands.placeholderText() == "type the band names (13 bands)"
    assert "The model needs VV, VH, not found" in dock.sar_bands.toolTip()
    assert not dock.sar_band_warning.isHidden() and "The model needs VV, VH" in dock.sar_band_warning.text()
    dock.sar_combo.setLayer(None)
    assert dock.sar_bands.placeholderText() == "from the layer's band names"
    assert dock.sar_band_warning.isHidden()


def test_run_classify_adds_styled_layers(dock, sample_layers, project, qtbot, qgis_iface, tmp_path) -> None:
    s2, s1 = sample_layers
    dock.optical_combo.setLayer(s2)
    dock.sar_combo.setLayer(s1)
    dock.classify_button.click()  # the stub main window is hidden, so no mouse events
    task = dock.task
    assert task is not None and not dock.classify_button.isEnabled() and dock.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: dock.task is None, timeout=TIMEOUT_MS)
    assert task.error == "" and not task.cancelled
    assert qgis_iface.messageBar().get_messages(Qgis.Critical) == []
    groups = project.layerTreeRoot().children()
    assert groups[0].name().startswith("MoSAiC classify: Spain S2 (mosaic-small-ben19")
    layers = [node.layer() for node in groups[0].findLayers()]
    assert [layer.name() for layer in layers[:1]] == ["Dominant class"]
    assert layers[1].name().startswith("Class probabilities: ")  # the class its colour ramp shows
    assert layers[1].renderer().type() == "singlebandpseudocolor"
    assert layers[1].name().endswith(layers[1].bandName(layers[1].renderer().usesBands()[0]).split(": ")[-1])
    assert layers[0].renderer().type() == "paletted"
    from mosaic.core.data.bands import BEN19_CLASSES  # the legend: the classes the raster holds, named
    legend = [(int(c.value), c.label) for c in layers[0].renderer().classes()]
    assert legend and all(label == BEN19_CLASSES[value] for value, label in legend)
    assert layers[1].bandCount() == 19
    assert sorted(p.name.split("_")[-2] for p in (tmp_path / "out").glob("*.tif")) == ["dominant", "probabilities"]
    assert "Bands used: optical: B01,B02" in dock.status.text()
    assert any("classify done" in m for m in qgis_iface.messageBar().get_messages(Qgis.Success))
    assert dock.progress.value() == 100  # a finished run reads as finished
    dock.last_layers = []


def test_cancel_leaves_no_file(dock, sample_layers, project, qtbot, qgis_iface, tmp_path) -> None:
    s2, s1 = sample_layers
    dock.optical_combo.setLayer(s2)
    dock.sar_combo.setLayer(s1)
    dock.embed_button.click()
    task = dock.task
    dock.cancel_button.click()
    qtbot.waitUntil(lambda: dock.task is None, timeout=TIMEOUT_MS)
    assert task.cancelled and task.result is None
    assert list((tmp_path / "out").iterdir()) == []  # no output, no temporary file
    assert project.layerTreeRoot().findGroups() == []
    assert any("cancelled" in m for m in qgis_iface.messageBar().get_messages(Qgis.Info))
    assert dock.classify_button.isEnabled() and not dock.cancel_button.isEnabled()
    assert dock.progress.value() == 0


def test_cancel_a_running_task_stops_within_a_block(mosaic_plugin, sample_layers, qtbot, tmp_path) -> None:
    """A SceneTask cancelled after its first block: the engine stops and removes its files."""
    from mosaic.mosaic_qgis.tasks import SceneTask

    s2, s1 = sample_layers
    outputs = {"probabilities": str(tmp_path / "p.tif"), "dominant": str(tmp_path / "d.tif")}
    request = {"model": mosaic_plugin.dock.current_model().path, "optical": s2.source(), "sar": s1.source(),
               "outputs": outputs, "block_size": 128}  # about 20 blocks
    done = []
    task = SceneTask("cancel test", request, on_done=done.append)
    progress, statuses = [], []
    task.progressChanged.connect(progress.append)
    task.statusChanged.connect(statuses.append)
    QgsApplication.taskManager().addTask(task)
    qtbot.waitUntil(lambda: any(0 < p < 100 for p in progress), timeout=TIMEOUT_MS)
    task.cancel()
    qtbot.waitUntil(lambda: bool(done), timeout=TIMEOUT_MS)
    assert done[0].cancelled and done[0].result is None and done[0].error == ""
    assert statuses[-1] == QgsTask.Complete  # QGIS's task manager says "failed" of a Terminated task
    assert max(progress[:-1]) < 100 and progress[-1] == 100  # the engine stopped; QGIS ends a task at 100
    assert list(tmp_path.iterdir()) == []


def test_errors_go_to_the_message_bar(dock, sample_layers, qgis_iface) -> None:
    s2, s1 = sample_layers
    dock.optical_combo.setLayer(None)
    dock.sar_combo.setLayer(None)
    assert dock.start("classify") is None
    assert any("Choose an optical layer" in m for m in qgis_iface.messageBar().get_messages(Qgis.Critical))
    qgis_iface.messageBar().clear_messages()
    dock.optical_combo.setLayer(s1)  # a SAR file given as optical: the engine's band check names the fix
    dock.start("classify")
    assert dock.task is not None
    dock_task = dock.task
    from qgis.PyQt.QtTest import QTest

    deadline = 120
    while dock.task is not None and deadline:
        QTest.qWait(500)
        deadline -= 1
    assert dock_task.error
    messages = qgis_iface.messageBar().get_messages(Qgis.Critical)
    assert any("lacks band(s) B01" in m for m in messages), messages
    assert QgsApplication.taskManager().countActiveTasks() == 0


def test_a_model_with_a_pixel_head_classifies_per_pixel(dock, sample_layers, project, qtbot, tmp_path) -> None:
    """Fine-tuned from polygons (here through core, with few steps), a model maps per 10 m pixel:
    the dock ticks the fine map for it, and the layers come styled with the polygons' classes."""
    import json
    from pathlib import Path

    from mosaic.core.fewshot import FinetuneConfig, finetune_from_polygons
    from mosaic.core.fewshot.label_file import read_label_file

    root = Path(__file__).resolve().parents[2]
    labels = root / "resources" / "sample" / "labels" / "spain_polygons.geojson"
    polygons, crs = read_label_file(labels)
    quick = [p for p, f in zip(polygons, json.loads(labels.read_text())["features"]) if f["properties"]["quick"]]
    s2, s1 = sample_layers
    res = finetune_from_polygons(dock.current_model().path, quick, crs, s2.source(), s1.source(), tmp_path / "fine",
                                 FinetuneConfig(epochs=1, windows_per_polygon=2, unlabelled=8, folds=2, pixel_steps=60,
                                                cached_views=2), optical_bands="S2-13")
    assert dock.window_check.isChecked() and not dock.fine_check.isEnabled()  # the bundled model: windows only
    dock.add_model(res.card_path)
    assert dock.fine_check.isEnabled() and dock.fine_check.isChecked() and not dock.window_check.isChecked()
    assert "Fine map (10 m) classes: Urban fabric" in dock.model_bands.text()
    dock.optical_combo.setLayer(s2)
    dock.sar_combo.setLayer(s1)
    dock.classify_button.click()
    qtbot.waitUntil(lambda: dock.task is None, timeout=TIMEOUT_MS)
    layers = [node.layer() for node in project.layerTreeRoot().children()[0].findLayers()]
    assert [layer.name().split(": ")[0] for layer in layers] == [
        "Fine classes (10 m)", "Fine class probabilities (10 m)", "Fine uncertainty (10 m)"]
    assert layers[1].name().split(": ")[1] in res.pixel_classes  # the class its colour ramp shows
    legend = [c.label for c in layers[0].renderer().classes()]
    assert legend and set(legend) <= set(res.pixel_classes)
    assert layers[0].rasterUnitsPerPixelX() == 10.0
    dock.window_check.setChecked(False)
    dock.fine_check.setChecked(False)
    assert dock.start("classify") is None  # nothing ticked: a message says what to tick
    dock.last_layers = []
    dock.reload_models()


def test_the_dock_fits_a_laptop_screen_with_progress_in_sight(dock, qtbot) -> None:
    """On a 1366 x 768 screen (a dock about 650 px high under QGIS's bars) the settings scroll and
    the run buttons, the progress bar and the status line stay visible below them."""
    from qgis.PyQt.QtCore import QPoint

    assert dock.minimumSizeHint().height() <= 400, dock.minimumSizeHint()
    dock.setFloating(True)
    dock.resize(380, 650)
    dock.show()
    qtbot.waitExposed(dock)
    area = dock.settings_area
    for widget in (dock.progress, dock.status, dock.classify_button, dock.cancel_button):
        assert not area.isAncestorOf(widget), f"{widget.objectName() or widget} scrolls away with the settings"
        top = widget.mapTo(dock, QPoint(0, 0)).y()
        assert widget.isVisible() and 0 <= top and top + widget.height() <= dock.height(), (widget, top, dock.height())
    assert area.verticalScrollBar().maximum() > 0  # the settings are taller than the dock: they scroll
    assert dock.labels.label_class_list.minimumHeight() >= 5 * dock.labels.label_class_list.fontMetrics().lineSpacing()
    dock.setFloating(False)


def test_the_settings_never_need_to_scroll_sideways(dock, qtbot) -> None:
    area = dock.settings_area
    dock.setFloating(True)
    dock.resize(dock.minimumSizeHint().width(), 650)
    dock.show()
    qtbot.waitExposed(dock)
    assert area.widget().width() >= area.widget().minimumSizeHint().width()  # nothing cut at the right edge
    dock.setFloating(False)


def test_label_polygons_stay_above_a_new_run(project) -> None:
    """A run's group goes on top of the maps, under the vector layers at the top (labels drawn over it)."""
    from qgis.core import QgsRasterLayer, QgsVectorLayer

    from mosaic.mosaic_qgis.styling import new_run_group

    from .conftest import S2_PATH

    labels = QgsVectorLayer("Polygon?crs=EPSG:4326", "labels", "memory")
    scene = QgsRasterLayer(str(S2_PATH), "scene", "gdal")
    project.addMapLayer(scene)
    project.addMapLayer(labels, False)
    root = project.layerTreeRoot()
    root.insertLayer(0, labels)  # the polygons on top of the scene
    names = lambda: [c.name() for c in root.children()]  # noqa: E731
    assert names()[0] == "labels"
    new_run_group(project, "run 1")
    new_run_group(project, "run 2")
    assert names()[:3] == ["labels", "run 2", "run 1"] and names()[-1] == "scene"


def test_fine_tune_cancel_is_reported_as_cancelled(mosaic_plugin, sample_layers, qtbot, tmp_path) -> None:
    """Cancel during fine-tuning: no model written, the task ends as cancelled (not failed)."""
    from mosaic.core.fewshot.label_file import read_label_file
    from mosaic.mosaic_qgis.tasks import FinetuneTask

    s2, s1 = sample_layers
    labels = Path(__file__).resolve().parents[2] / "resources" / "sample" / "labels" / "spain_polygons.geojson"
    polygons, crs = read_label_file(labels)
    arguments = {"base": mosaic_plugin.dock.current_model().path, "polygons": polygons, "crs": crs,
                 "optical": s2.source(), "sar": s1.source(), "out": str(tmp_path / "ft"),
                 "cfg": {"epochs": 2, "folds": 2}}
    done, progress, statuses = [], [], []
    task = FinetuneTask("fine-tune cancel test", arguments, on_done=done.append)
    task.progressChanged.connect(progress.append)
    task.statusChanged.connect(statuses.append)
    QgsApplication.taskManager().addTask(task)
    qtbot.waitUntil(lambda: any(p > 0 for p in progress), timeout=TIMEOUT_MS)
    task.cancel()
    qtbot.waitUntil(lambda: bool(done), timeout=TIMEOUT_MS)
    assert done[0].cancelled and done[0].result is None and done[0].error == ""
    assert statuses[-1] == QgsTask.Complete
    assert list(tmp_path.iterdir()) == []
