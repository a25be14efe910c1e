"""The MoSAiC dock panel: pick layers and a model, run classify or embed in a background task;
label polygons on the map and fine-tune the model on them.

Widgets only; the work runs in ``tasks.SceneTask`` / ``FinetuneTask`` and the results are
styled by ``styling``; the labelling box is ``label_panel.LabelPanel`` (``dock.labels``).
Expected errors go to the message bar, never to a traceback dialog.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from qgis.core import (
    Qgis,
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsMapLayerProxyModel,
    QgsProcessingUtils,
    QgsProject,
    QgsRasterLayer,
)
from qgis.gui import QgsDockWidget, QgsFileWidget, QgsMapLayerComboBox
from qgis.PyQt.QtCore import QSize, Qt
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from . import deps
from .band_fields import LayerBands, describe_layer, order_question
from .inputs import layer_path, parse_band_list
from .label_panel import LabelPanel, swatch
from .labels import crs_string, features_to_polygons, foreign_edits, save_edits
from .models import ModelInfo, list_models, read_model_info, user_models_dir
from .styling import add_output_layers
from .tasks import FinetuneTask, SceneTask

ICON_PATH = Path(__file__).resolve().parent.parent / "resources" / "icons" / "mosaic.svg"
MESSAGE_TITLE = "MoSAiC"


class MosaicDock(QgsDockWidget):
    """Dock panel; ``iface`` gives the message bar and the map canvas (may be a test stub)."""

    def __init__(self, iface, parent: QWidget | None = None) -> None:
        super().__init__("MoSAiC", parent)
        self.setObjectName("MosaicDock")
        self.iface = iface
        self.task: SceneTask | None = None
        self.finetune_task: FinetuneTask | None = None
        self.finetune_options: dict[str, Any] = {}  # extra FinetuneConfig fields (scripts, tests)
        self.last_layers: list[QgsRasterLayer] = []
        self._models: list[ModelInfo] = []
        self._build()
        self.reload_models()

    # -- widgets ------------------------------------------------------------------------
    def _build(self) -> None:
        """The settings scroll (a laptop's 768 px screen holds a third of them); the run buttons,
        the progress bar and the status line stay below them, always in sight."""
        panel = QWidget(self)
        outer = QVBoxLayout(panel)
        outer.setContentsMargins(0, 0, 0, 0)
        scroll = QScrollArea(panel)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.settings_area = scroll
        body = QWidget(scroll)
        layout = QVBoxLayout(body)

        inputs = QGroupBox("Inputs", body)
        form = QFormLayout(inputs)
        self.optical_combo = QgsMapLayerComboBox(inputs)
        self.optical_combo.setFilters(QgsMapLayerProxyModel.RasterLayer)
        self.optical_combo.setAllowEmptyLayer(True)
        self.optical_combo.setLayer(None)
        self.optical_bands = QLineEdit(inputs)
        self.optical_bands.setPlaceholderText("from the layer's band names")
        self.optical_bands.setToolTip(
            "Band names in file order, comma-separated ('-' = ignore), e.g. B01,B02,...,B12 or the preset S2-13.\n"
            "Empty: read from the layer's band descriptions, metadata or file names."
        )
        self.sar_combo = QgsMapLayerComboBox(inputs)
        self.sar_combo.setFilters(QgsMapLayerProxyModel.RasterLayer)
        self.sar_combo.setAllowEmptyLayer(True)
        self.sar_combo.setLayer(None)
        self.sar_bands = QLineEdit(inputs)
        self.sar_bands.setPlaceholderText("from the layer's band names")
        self.sar_bands.setToolTip("SAR band names in file order, e.g. VV,VH. Empty: read from the layer.")
        self.optical_band_warning = self._band_warning(inputs)
        self.sar_band_warning = self._band_warning(inputs)
        self.layer_bands: dict[str, LayerBands | None] = {"optical": None, "sar": None}
        form.addRow("Optical (S2)", self.optical_combo)
        form.addRow("  bands", self.optical_bands)
        form.addRow(self.optical_band_warning)
        form.addRow("SAR (S1)", self.sar_combo)
        form.addRow("  bands", self.sar_bands)
        form.addRow(self.sar_band_warning)
        self.optical_bands.textChanged.connect(lambda _text: self._show_band_warnings())
        self.sar_bands.textChanged.connect(lambda _text: self._show_band_warnings())
        self.optical_combo.layerChanged.connect(lambda _layer: self._show_layer_bands())
        self.sar_combo.layerChanged.connect(lambda _layer: self._show_layer_bands())
        layout.addWidget(inputs)

        model_box = QGroupBox("Model", body)
        model_layout = QVBoxLayout(model_box)
        row = QHBoxLayout()
        self.model_combo = QComboBox(model_box)
        self.model_combo.currentIndexChanged.connect(self._show_model)
        browse = QToolButton(model_box)
        browse.setText("…")
        browse.setToolTip(f"Add a model file (NAME.json next to NAME.safetensors). User models: {user_models_dir()}")
        browse.clicked.connect(self._browse_model)
        row.addWidget(self.model_combo, 1)
        row.addWidget(browse)
        model_layout.addLayout(row)
        self.model_bands = QLabel(model_box)
        self.model_bands.setWordWrap(True)
        model_layout.addWidget(self.model_bands)
        self.class_list = QListWidget(model_box)
        self.class_list.setIconSize(QSize(12, 12))
        self.class_list.setMinimumHeight(110)
        self.class_list.setMaximumHeight(170)
        self.class_list.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.class_list.setToolTip("The model's classes and the colours of the dominant-class layer")
        model_layout.addWidget(self.class_list)
        layout.addWidget(model_box)

        options = QGroupBox("Run", body)
        opt_form = QFormLayout(options)
        self.device_combo = QComboBox(options)
        self.device_combo.setEditable(True)
        self.device_combo.addItems(["auto", "cpu", "cuda:0"])
        self.device_combo.setToolTip("auto uses a GPU when torch sees one")
        self.clusters_spin = QSpinBox(options)
        self.clusters_spin.setRange(2, 64)
        self.clusters_spin.setValue(8)
        self.extent_check = QCheckBox("Only the visible map extent", options)
        self.fine_check = QCheckBox("Fine map (per 10 m pixel)", options)
        self.fine_check.setToolTip("Classes, probabilities and uncertainty of every pixel, from the pixel head of a "
                                   "model fine-tuned from your polygons")
        self.window_check = QCheckBox("Window map (1.2 km windows)", options)
        self.window_check.setToolTip("Multi-label probabilities and dominant class of the window around each "
                                     "160 m cell (no value where the window is less than 90 % inside the data)")
        self.output_dir = QgsFileWidget(options)
        self.output_dir.setStorageMode(QgsFileWidget.GetDirectory)
        self.output_dir.lineEdit().setPlaceholderText("temporary folder")
        opt_form.addRow("Device", self.device_combo)
        opt_form.addRow("Clusters (embed)", self.clusters_spin)
        opt_form.addRow("", self.extent_check)
        opt_form.addRow("Classify", self.fine_check)
        opt_form.addRow("", self.window_check)
        opt_form.addRow("Output folder", self.output_dir)
        layout.addWidget(options)

        self.labels = LabelPanel(self.iface, self.current_model, self._message, self.status_text, body)
        self.labels.finetune_button.clicked.connect(self.start_finetune)
        layout.addWidget(self.labels)
        layout.addStretch(1)
        scroll.setWidget(body)
        outer.addWidget(scroll, 1)

        footer = QVBoxLayout()
        footer.setContentsMargins(9, 0, 9, 6)
        buttons = QHBoxLayout()
        self.classify_button = QPushButton("Classify", body)
        self.classify_button.setToolTip("The fine map and/or the window map, as ticked in the Run box")
        self.embed_button = QPushButton("Embed + cluster", body)
        self.embed_button.setToolTip("Embeddings and their K-means clusters")
        self.cancel_button = QPushButton("Cancel", body)
        self.cancel_button.setEnabled(False)
        self.classify_button.clicked.connect(lambda: self.start("classify"))
        self.embed_button.clicked.connect(lambda: self.start("embed"))
        self.cancel_button.clicked.connect(self.cancel)
        for button in (self.classify_button, self.embed_button, self.cancel_button):
            buttons.addWidget(button)
        footer.addLayout(buttons)
        self.progress = QProgressBar(panel)
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        footer.addWidget(self.progress)
        self.status = QLabel("", panel)
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.status.setMaximumHeight(5 * self.status.fontMetrics().lineSpacing())  # the rest: message bar, tooltip
        footer.addWidget(self.status)
        outer.addLayout(footer)
        self.setWidget(panel)
        # as wide as the settings need beside the scroll bar: they scroll up and down, never sideways
        panel.setMinimumWidth(body.minimumSizeHint().width() + scroll.verticalScrollBar().sizeHint().width() + 4)

    # -- fine-tuning ----------------------------------------------------------------------
    def build_finetune(self) -> dict[str, Any]:
        """``finetune_from_polygons`` arguments from the widgets; ValueError says what to change."""
        optical = self.optical_combo.currentLayer()
        sar = self.sar_combo.currentLayer()
        if optical is None and sar is None:
            raise ValueError("Choose an optical layer, a SAR layer, or both, to fine-tune on.")
        info = self.current_model()
        if info is None:
            raise ValueError("No base model: choose one in the Model box.")
        layer = self.labels.label_layer()
        if layer is None:
            raise ValueError("Choose a label layer (polygons with class names), or create one with New….")
        field = self.labels.label_field_combo.currentField()
        if not field:
            raise ValueError(f"Choose the label field of '{layer.name()}'.")
        if save_edits(layer):  # the polygons drawn so far are on disk before the model describes them
            self._message(f"The edits of '{layer.name()}' were saved before fine-tuning.", Qgis.Info)
        polygons = features_to_polygons(layer, field, self.labels.label_separator.text())
        scheme = self.labels.new_classes()
        name = f"{info.name}-ft-{time.strftime('%Y%m%d-%H%M%S')}"
        user_models_dir().mkdir(parents=True, exist_ok=True)
        return {
            "base": info.path, "polygons": polygons, "crs": crs_string(layer.crs()),
            "optical": layer_path(optical) if optical is not None else None,
            "sar": layer_path(sar) if sar is not None else None,
            "optical_bands": parse_band_list(self.optical_bands.text()) if optical is not None else None,
            "sar_bands": parse_band_list(self.sar_bands.text()) if sar is not None else None,
            "out": str(user_models_dir() / name), "colors": dict(scheme), "scheme": [n for n, _ in scheme],
            "label_source": {"layer": layer.name(), "source": layer.source(), "field": field,
                             "separator": self.labels.label_separator.text()},
            "cfg": {"epochs": self.labels.epochs_spin.value(), "train_parts": self.labels.parts_combo.currentData(),
                    "device": self.device_combo.currentText().strip().lower() or "auto", **self.finetune_options},
        }

    def _can_start(self) -> bool:
        """No other run in progress and the dependencies importable; otherwise say why."""
        if self.task is not None or self.finetune_task is not None:
            self._message("A MoSAiC run is in progress: wait for it or cancel it.", Qgis.Warning)
            return False
        missing = deps.missing_modules()
        if missing:
            self._message(deps.missing_message(missing), Qgis.Critical)
            return False
        return True

    def start_finetune(self) -> FinetuneTask | None:
        """Fine-tune in a background task (progress bar, Cancel); the new model is listed when done."""
        if not self._can_start():
            return None
        layer = self.labels.label_layer()
        others = foreign_edits(layer) if layer is not None else []
        if others and not self._confirm(
                "MoSAiC: unsaved edits",
                f"'{layer.name()}' also holds {len(others)} unsaved edit(s) made outside the labelling tool "
                f"({', '.join(dict.fromkeys(others))}).\n\nFine-tuning saves the layer first, so that the model "
                f"describes the polygons on disk. Save these edits too and fine-tune?"):
            self.status.setText(f"Not started: '{layer.name()}' has edits you may not want saved.")
            return None
        try:
            arguments = self.build_finetune()
        except (ValueError, OSError) as e:
            self._message(str(e), Qgis.Critical)
            return None
        if not self.confirm_band_orders(arguments):
            return None
        task = FinetuneTask(f"MoSAiC fine-tune: {self.current_model().name}", arguments, on_done=self._finetune_done)
        task.progressChanged.connect(lambda value: self.progress.setValue(int(value)))
        self.finetune_task = task
        self._set_running(True)
        self.status.setText("fine-tune: running…")
        QgsApplication.taskManager().addTask(task)
        return task

    def _finetune_done(self, task: FinetuneTask) -> None:
        self.finetune_task = None
        self._set_running(False)
        if task.cancelled:
            self.status.setText("fine-tune: cancelled")
            self._message("Fine-tuning cancelled; no model was written.", Qgis.Info)
            return
        if task.error or task.result is None:
            self.status.setText("fine-tune: failed")
            self._message(task.error or "fine-tuning failed", Qgis.Critical)
            return
        res = task.result
        self.reload_models(select=res.card_path)
        text = f"fine-tune: {Path(res.card_path).stem} in {res.seconds:.0f} s\n{res.summary()}\nReport: {res.report_html}"
        self.status.setText(text)
        self.status.setToolTip(text)  # the whole of it; the line shows its first lines
        headline = res.summary().splitlines()[0] if res.summary() else ""
        self._message(f"Fine-tuned model {Path(res.card_path).stem} saved and selected ({headline}); report: "
                      f"<a href='{Path(res.report_html).as_uri()}'>{Path(res.report_html).name}</a>", Qgis.Success)

    @staticmethod
    def _band_warning(parent: QWidget) -> QLabel:
        """A line under a band field that says in words when its layer's band order is a guess."""
        label = QLabel("", parent)
        label.setWordWrap(True)
        label.setStyleSheet("color: #b35900;")
        label.hide()
        return label

    def _show_layer_bands(self) -> None:
        """Show in each band field how a run will read the chosen layer's bands for the current
        model (names from the file, '-' = unused), and in words under it when the order is a
        guess or names are missing."""
        info = self.current_model() if hasattr(self, "model_combo") else None
        for key, combo, field, modality, needed, hint in (
            ("optical", self.optical_combo, self.optical_bands, "s2", info.optical_bands if info else (),
             "Band names in file order, comma-separated ('-' = ignore), e.g. B01,B02,...,B12 or the preset S2-13."),
            ("sar", self.sar_combo, self.sar_bands, "s1", info.sar_bands if info else (),
             "SAR band names in file order, e.g. VV,VH."),
        ):
            layer = combo.currentLayer()
            self.layer_bands[key] = None
            if not isinstance(layer, QgsRasterLayer):
                field.setPlaceholderText("from the layer's band names")
                field.setToolTip(hint + "\nEmpty: read from the layer's band descriptions, metadata or file names.")
                continue
            names = [layer.dataProvider().generateBandName(i) for i in range(1, layer.bandCount() + 1)]
            bands = LayerBands(f"from the layer's band names ({layer.bandCount()} bands)", "")
            if layer.providerType() == "gdal" and needed and not deps.missing_modules():
                bands = describe_layer(layer, modality, needed)
            self.layer_bands[key] = bands
            field.setPlaceholderText(bands.placeholder)
            field.setToolTip(hint + "\nEmpty: as shown." + bands.detail + "\n\nLayer bands:\n" + "\n".join(names))
        self._show_band_warnings()

    def _show_band_warnings(self) -> None:
        """The warning under a band field, while the field is empty (typed names replace the guess)."""
        for key, field, label in (("optical", self.optical_bands, self.optical_band_warning),
                                  ("sar", self.sar_bands, self.sar_band_warning)):
            bands = self.layer_bands.get(key)
            text = bands.warning if bands is not None and not field.text().strip() else ""
            label.setText(text)
            label.setVisible(bool(text))

    def _confirm(self, title: str, text: str) -> bool:
        """Ask a yes/no question (tests replace this)."""
        answer = QMessageBox.question(self, title, text, QMessageBox.Yes | QMessageBox.No, QMessageBox.No)
        return answer == QMessageBox.Yes

    def confirm_band_orders(self, arguments: dict[str, Any]) -> bool:
        """For each input whose band field is empty and whose band order is a guess, ask before
        reading it so; yes puts the guessed list into ``arguments`` (the run reads exactly what
        was confirmed), no stops the start. True when the run may start."""
        info = self.current_model()
        for key, combo, modality, needed in (("optical", self.optical_combo, "s2", info.optical_bands),
                                             ("sar", self.sar_combo, "s1", info.sar_bands)):
            bands = self.layer_bands.get(key)
            if arguments.get(key) is None or arguments.get(f"{key}_bands") is not None or bands is None \
                    or bands.guess is None:
                continue
            text = order_question(combo.currentLayer(), modality, bands, needed,
                                  info.optical_means if modality == "s2" else None)
            if not self._confirm("MoSAiC: band order unknown", text):
                self.status.setText(f"Not started: type the band names of '{combo.currentLayer().name()}'.")
                (self.optical_bands if key == "optical" else self.sar_bands).setFocus()
                return False
            arguments[f"{key}_bands"] = list(bands.guess)
        return True

    def reload_models(self, select: str | None = None) -> None:
        """Fill the model list (bundled + user folder); ``select`` a card path."""
        self._models = list_models()
        if select and all(m.path != select for m in self._models):
            self._models.append(read_model_info(select))
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        for info in self._models:
            label = f"{info.name} (bundled)" if info.bundled else info.name
            self.model_combo.addItem(label, info.path)
        self.model_combo.blockSignals(False)
        index = self.model_combo.findData(select) if select else 0
        self.model_combo.setCurrentIndex(max(index, 0))
        self._show_model()

    def current_model(self) -> ModelInfo | None:
        index = self.model_combo.currentIndex()
        return self._models[index] if 0 <= index < len(self._models) else None

    def _show_model(self, *_args) -> None:
        info = self.current_model()
        self.class_list.clear()
        if info is None:
            self.model_bands.setText("No model found: add one with …")
            return
        self.model_bands.setText(info.summary())
        # a model fine-tuned from polygons maps per pixel; the window map stays available beside it
        self.fine_check.setEnabled(bool(info.pixel_classes))
        self.fine_check.setChecked(bool(info.pixel_classes))
        self.window_check.setChecked(not info.pixel_classes)
        for name, color in info.classes:
            QListWidgetItem(swatch(color), name, self.class_list)
        if hasattr(self, "labels"):  # built after the model box
            self.labels.fill_classes()
        self._show_layer_bands()  # the mapping depends on the model's bands

    def _browse_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "MoSAiC model", str(user_models_dir()), "MoSAiC model card (*.json)"
        )
        if path:
            self.add_model(path)

    def add_model(self, path: str) -> None:
        try:
            info = read_model_info(path)
        except ValueError as e:
            self._message(str(e), Qgis.Critical)
            return
        self.reload_models(select=info.path)

    # -- running --------------------------------------------------------------------------
    def status_text(self, text: str) -> None:
        self.status.setText(text)

    def _message(self, text: str, level=Qgis.Info) -> None:
        if self.iface is not None:
            self.iface.messageBar().pushMessage(MESSAGE_TITLE, text, level=level, duration=0 if level == Qgis.Critical else 8)

    def _output_paths(self, kinds: tuple[str, ...], stem: str) -> dict[str, str]:
        folder = self.output_dir.filePath().strip()
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
        else:
            folder = tempfile.mkdtemp(prefix="mosaic-", dir=QgsProcessingUtils.tempFolder())
        stamp = time.strftime("%Y%m%d-%H%M%S")
        paths = {}
        for kind in kinds:
            path = Path(folder) / f"{stem}_{kind}_{stamp}.tif"
            n = 1
            while path.exists():
                path = Path(folder) / f"{stem}_{kind}_{stamp}-{n}.tif"
                n += 1
            paths[kind] = str(path)
        return paths

    def build_request(self, job: str) -> dict[str, Any]:
        """``SceneRequest`` fields from the widgets; ValueError says what to change."""
        optical = self.optical_combo.currentLayer()
        sar = self.sar_combo.currentLayer()
        if optical is None and sar is None:
            raise ValueError("Choose an optical layer, a SAR layer, or both.")
        info = self.current_model()
        if info is None:
            raise ValueError(f"No model: put one in {user_models_dir()} or add one with the … button.")
        if optical is not None and not info.optical_bands:
            raise ValueError(f"The model {info.name} has no optical stream: leave the optical layer empty.")
        if sar is not None and not info.sar_bands:
            raise ValueError(f"The model {info.name} has no SAR stream: leave the SAR layer empty.")
        device = self.device_combo.currentText().strip().lower() or "auto"
        if job == "classify":
            fine = self.fine_check.isChecked() and bool(info.pixel_classes)
            kinds = (("fine_classes", "fine_probabilities", "fine_uncertainty") if fine else ()) + \
                (("probabilities", "dominant") if self.window_check.isChecked() else ())
            if not kinds:
                raise ValueError("Tick what to classify: the fine map (a model fine-tuned from polygons) or the "
                                 "window map.")
        else:
            kinds = ("embeddings", "clusters")
        stem = Path((optical or sar).source()).stem or "mosaic"
        request: dict[str, Any] = {
            "model": info.path,
            "optical": layer_path(optical) if optical is not None else None,
            "sar": layer_path(sar) if sar is not None else None,
            "optical_bands": parse_band_list(self.optical_bands.text()) if optical is not None else None,
            "sar_bands": parse_band_list(self.sar_bands.text()) if sar is not None else None,
            "device": device,
            "outputs": self._output_paths(kinds, stem),
        }
        if job == "embed":
            request["clusters"] = self.clusters_spin.value()
        canvas = self.iface.mapCanvas() if self.iface is not None else None
        if self.extent_check.isChecked() and canvas is not None:
            extent = canvas.extent()
            crs: QgsCoordinateReferenceSystem = canvas.mapSettings().destinationCrs()
            request["extent"] = (extent.xMinimum(), extent.yMinimum(), extent.xMaximum(), extent.yMaximum())
            request["extent_crs"] = crs.authid() or crs.toWkt()
        return request

    def start(self, job: str) -> SceneTask | None:
        """Start ``classify`` or ``embed`` in a background task; None when it cannot start."""
        if not self._can_start():
            return None
        try:
            request = self.build_request(job)
        except (ValueError, OSError) as e:
            self._message(str(e), Qgis.Critical)
            return None
        if not self.confirm_band_orders(request):
            return None
        info = self.current_model()
        source = (self.optical_combo.currentLayer() or self.sar_combo.currentLayer()).name()
        task = SceneTask(f"MoSAiC {job}: {source}", request, on_done=self._finished)
        task.job, task.source, task.model_info = job, source, info
        task.progressChanged.connect(lambda value: self.progress.setValue(int(value)))
        self.task = task
        self._set_running(True)
        self.status.setText(f"{job}: running…")
        QgsApplication.taskManager().addTask(task)
        return task

    def cancel(self) -> None:
        for task in (self.task, self.finetune_task):
            if task is not None:
                self.status.setText("cancelling…")
                task.cancel()

    def _set_running(self, running: bool) -> None:
        self.classify_button.setEnabled(not running)
        self.embed_button.setEnabled(not running)
        self.labels.finetune_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        if running:
            self.progress.setValue(0)

    def _finished(self, task: SceneTask) -> None:
        self.task = None
        self._set_running(False)
        if task.cancelled:
            self.progress.setValue(0)
            self.status.setText(f"{task.job}: cancelled")
            self._message(f"{task.job} cancelled; no output was written.", Qgis.Info)
            return
        if task.error or task.result is None:
            self.progress.setValue(0)
            self.status.setText(f"{task.job}: failed")
            self._message(task.error or "the run failed", Qgis.Critical)
            return
        result = task.result
        info: ModelInfo = task.model_info
        group = f"MoSAiC {task.job}: {task.source} ({info.name}, {time.strftime('%H:%M:%S')})"
        k = task.request.get("clusters") if "clusters" in result.outputs else None
        try:
            self.last_layers = add_output_layers(QgsProject.instance(), result.outputs, group, info.classes, k,
                                                 info.pixel_classes)
        except ValueError as e:
            self._message(str(e), Qgis.Critical)
            return
        for warning in result.warnings:
            self._message(warning, Qgis.Warning)
        bands = "; ".join(f"{key}: {','.join(names)}" for key, names in task.band_lists.items() if names)
        self.status.setText(
            f"{task.job}: {result.width} x {result.height} px in {result.seconds:.1f} s ({result.crs}, "
            f"{result.mode}).\nBands used: {bands}"
        )
        self.progress.setValue(100)
        self._message(f"{task.job} done: {len(self.last_layers)} layer(s) in group '{group}'.", Qgis.Success)

    def shutdown(self) -> None:
        """Cancel a run, detach from it and wait for its thread to stop (plugin unload, QGIS
        closing: QGIS 3.40 exits without waiting, and a thread still running aborts the process)."""
        if self.task is not None:
            self.task.on_done = None
            self.task.cancel()
            self.task.waitForFinished(30_000)  # cancel stops within a block: seconds
            self.task = None
        if self.finetune_task is not None:
            self.finetune_task.on_done = None
            self.finetune_task.cancel()
            self.finetune_task.waitForFinished(30_000)
            self.finetune_task = None
        self.labels.shutdown()
        self.last_layers = []
