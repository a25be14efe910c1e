"""The MoSAiC dock panel: pick layers and a model, run classify or embed in a background task.

Widgets only; the work runs in ``tasks.SceneTask`` and the results are styled by
``styling``. Expected errors go to the message bar, never to a traceback dialog.
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
from qgis.PyQt.QtGui import QColor, QIcon, QPixmap
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from . import deps
from .inputs import layer_path, parse_band_list
from .models import ModelInfo, list_models, read_model_info, user_models_dir
from .styling import add_output_layers
from .tasks import SceneTask

ICON_PATH = Path(__file__).resolve().parent.parent / "resources" / "icons" / "mosaic.svg"
MESSAGE_TITLE = "MoSAiC"


def _swatch(color: str) -> QIcon:
    pixmap = QPixmap(12, 12)
    pixmap.fill(QColor(color))
    return QIcon(pixmap)


class MosaicDock(QgsDockWidget):
    """Dock panel; ``iface`` gives the message bar and the map canvas (may be a test stub)."""

    def __init__(self, iface, parent: QWidget | None = None) -> None:
        super().__init__("MoSAiC", parent)
        self.setObjectName("MosaicDock")
        self.iface = iface
        self.task: SceneTask | None = None
        self.last_layers: list[QgsRasterLayer] = []
        self._models: list[ModelInfo] = []
        self._build()
        self.reload_models()

    # -- widgets ------------------------------------------------------------------------
    def _build(self) -> None:
        body = QWidget(self)
        layout = QVBoxLayout(body)

        inputs = QGroupBox("Inputs", body)
        form = QFormLayout(inputs)
        self.optical_combo = QgsMapLayerComboBox(inputs)
        self.optical_combo.setFilters(QgsMapLayerProxyModel.RasterLayer)
        self.optical_combo.setAllowEmptyLayer(True)
        self.optical_combo.setLayer(None)
        self.optical_bands = QLineEdit(inputs)
        self.optical_bands.setPlaceholderText("from band descriptions")
        self.optical_bands.setToolTip(
            "Band names in file order, comma-separated ('-' = ignore), e.g. B01,B02,...,B12 or the preset S2-13.\n"
            "Empty: guessed from the layer's band descriptions."
        )
        self.sar_combo = QgsMapLayerComboBox(inputs)
        self.sar_combo.setFilters(QgsMapLayerProxyModel.RasterLayer)
        self.sar_combo.setAllowEmptyLayer(True)
        self.sar_combo.setLayer(None)
        self.sar_bands = QLineEdit(inputs)
        self.sar_bands.setPlaceholderText("from band descriptions")
        self.sar_bands.setToolTip("SAR band names in file order, e.g. VV,VH. Empty: from the band descriptions.")
        form.addRow("Optical (S2)", self.optical_combo)
        form.addRow("  bands", self.optical_bands)
        form.addRow("SAR (S1)", self.sar_combo)
        form.addRow("  bands", self.sar_bands)
        self.optical_combo.layerChanged.connect(lambda layer: self._show_layer_bands(layer, self.optical_bands))
        self.sar_combo.layerChanged.connect(lambda layer: self._show_layer_bands(layer, self.sar_bands))
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
        self.output_dir = QgsFileWidget(options)
        self.output_dir.setStorageMode(QgsFileWidget.GetDirectory)
        self.output_dir.lineEdit().setPlaceholderText("temporary folder")
        opt_form.addRow("Device", self.device_combo)
        opt_form.addRow("Clusters (embed)", self.clusters_spin)
        opt_form.addRow("", self.extent_check)
        opt_form.addRow("Output folder", self.output_dir)
        layout.addWidget(options)

        buttons = QHBoxLayout()
        self.classify_button = QPushButton("Classify", body)
        self.classify_button.setToolTip("Class probabilities, dominant class, multi-hot and uncertainty")
        self.embed_button = QPushButton("Embed + cluster", body)
        self.embed_button.setToolTip("Embeddings and their K-means clusters")
        self.cancel_button = QPushButton("Cancel", body)
        self.cancel_button.setEnabled(False)
        self.classify_button.clicked.connect(lambda: self.start("classify"))
        self.embed_button.clicked.connect(lambda: self.start("embed"))
        self.cancel_button.clicked.connect(self.cancel)
        for button in (self.classify_button, self.embed_button, self.cancel_button):
            buttons.addWidget(button)
        layout.addLayout(buttons)
        self.progress = QProgressBar(body)
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        layout.addWidget(self.progress)
        self.status = QLabel("", body)
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        layout.addStretch(1)
        self.setWidget(body)

    def _show_layer_bands(self, layer, field: QLineEdit) -> None:
        if isinstance(layer, QgsRasterLayer):
            names = [layer.dataProvider().generateBandName(i) for i in range(1, layer.bandCount() + 1)]
            field.setPlaceholderText(f"from band descriptions ({layer.bandCount()} bands)")
            field.setToolTip(field.toolTip().split("\n\nLayer bands:")[0] + "\n\nLayer bands:\n" + "\n".join(names))

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
        for name, color in info.classes:
            QListWidgetItem(_swatch(color), name, self.class_list)

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
        kinds = ("probabilities", "dominant") if job == "classify" else ("embeddings", "clusters")
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
        if self.task is not None:
            self._message("A MoSAiC run is in progress: wait for it or cancel it.", Qgis.Warning)
            return None
        missing = deps.missing_modules()
        if missing:
            self._message(deps.missing_message(missing), Qgis.Critical)
            return None
        try:
            request = self.build_request(job)
        except (ValueError, OSError) as e:
            self._message(str(e), Qgis.Critical)
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
        if self.task is not None:
            self.status.setText("cancelling…")
            self.task.cancel()

    def _set_running(self, running: bool) -> None:
        self.classify_button.setEnabled(not running)
        self.embed_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        if not running:
            self.progress.setValue(0)

    def _finished(self, task: SceneTask) -> None:
        self.task = None
        self._set_running(False)
        if task.cancelled:
            self.status.setText(f"{task.job}: cancelled")
            self._message(f"{task.job} cancelled; no output was written.", Qgis.Info)
            return
        if task.error or task.result is None:
            self.status.setText(f"{task.job}: failed")
            self._message(task.error or "the run failed", Qgis.Critical)
            return
        result = task.result
        info: ModelInfo = task.model_info
        group = f"MoSAiC {task.job}: {task.source} ({info.name}, {time.strftime('%H:%M:%S')})"
        k = task.request.get("clusters") if "clusters" in result.outputs else None
        try:
            self.last_layers = add_output_layers(QgsProject.instance(), result.outputs, group, info.classes, k)
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
        self._message(f"{task.job} done: {len(self.last_layers)} layer(s) in group '{group}'.", Qgis.Success)

    def shutdown(self) -> None:
        """Cancel a run and detach from it (plugin unload, QGIS closing)."""
        if self.task is not None:
            self.task.on_done = None
            self.task.cancel()
            self.task = None
        self.last_layers = []
