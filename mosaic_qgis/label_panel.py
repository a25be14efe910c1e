"""The dock's "Labels and fine-tuning" box: the label layer, its classes, the draw / pick / undo
tools on the map canvas, and the fine-tuning settings.

Widgets and the labelling edits only; the dock starts the fine-tuning task (it owns the run
buttons, the progress bar and the one-run-at-a-time rule) and reads the settings from here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from qgis.core import Qgis, QgsCoordinateReferenceSystem, QgsMapLayerProxyModel, QgsProject, QgsVectorLayer
from qgis.gui import QgsFieldComboBox, QgsMapLayerComboBox
from qgis.PyQt.QtCore import QSize, Qt
from qgis.PyQt.QtGui import QColor, QIcon, QPixmap
from qgis.PyQt.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSpinBox,
    QToolButton,
    QWidget,
)

from ..core.data.bands import NEW_CLASS_COLORS  # plain constants: no torch needed to load the dock
from .labels import (
    LABEL_FIELD,
    SEPARATOR,
    add_labelled_polygon,
    create_label_layer,
    read_scheme,
    set_feature_labels,
    write_scheme,
)
from .models import ModelInfo, user_models_dir

TRAIN_PARTS = (("head only", "head"), ("head + last encoder stage", "head+1"), ("head + last two stages", "head+2"))


def swatch(color: str) -> QIcon:
    """A 12 px square of ``color``, the icon of a class in a list."""
    pixmap = QPixmap(12, 12)
    pixmap.fill(QColor(color))
    return QIcon(pixmap)


class LabelPanel(QGroupBox):
    """``iface`` gives the map canvas (may be a test stub or None); ``current_model`` the dock's
    chosen model (its classes are offered first); ``message`` and ``status`` report to the
    message bar and the dock's status line."""

    def __init__(self, iface, current_model: Callable[[], ModelInfo | None],
                 message: Callable[..., None], status: Callable[[str], None], parent: QWidget | None = None) -> None:
        super().__init__("Labels and fine-tuning", parent)
        self.iface = iface
        self._current_model = current_model
        self._message = message
        self._status = status
        self.label_tool = None  # map_tools.label_tool.LabelTool, made on first use
        self._extra_classes: list[tuple[str, str]] = []
        self._build()

    def _build(self) -> None:
        form = QFormLayout(self)
        row = QHBoxLayout()
        self.label_layer_combo = QgsMapLayerComboBox(self)
        self.label_layer_combo.setFilters(QgsMapLayerProxyModel.PolygonLayer)
        self.label_layer_combo.setAllowEmptyLayer(True)
        self.label_layer_combo.setLayer(None)
        self.label_layer_combo.setToolTip("Polygons with class names: a MoSAiC label layer or any layer of training areas")
        new_layer = QToolButton(self)
        new_layer.setText("New…")
        new_layer.setToolTip("Create a GeoPackage label layer in the project")
        new_layer.clicked.connect(self._new_label_layer)
        row.addWidget(self.label_layer_combo, 1)
        row.addWidget(new_layer)
        form.addRow("Label layer", row)
        self.label_field_combo = QgsFieldComboBox(self)
        self.label_separator = QLineEdit(SEPARATOR, self)
        self.label_separator.setMaximumWidth(40)
        self.label_separator.setToolTip("Separates several class names in one field value")
        field_row = QHBoxLayout()
        field_row.addWidget(self.label_field_combo, 1)
        field_row.addWidget(QLabel("sep."))
        field_row.addWidget(self.label_separator)
        form.addRow("Label field", field_row)
        self.label_layer_combo.layerChanged.connect(self._label_layer_changed)
        self.label_class_list = QListWidget(self)
        self.label_class_list.setIconSize(QSize(12, 12))
        rows = self.label_class_list.fontMetrics().lineSpacing() + 4
        self.label_class_list.setMinimumHeight(5 * rows)  # five classes in sight at least
        self.label_class_list.setMaximumHeight(8 * rows)
        self.label_class_list.setToolTip("Tick the class(es) of the next polygon you draw or pick (multi-label)")
        form.addRow("Classes", self.label_class_list)
        class_row = QHBoxLayout()
        self.new_class_edit = QLineEdit(self)
        self.new_class_edit.setPlaceholderText("new class name")
        add_class = QToolButton(self)
        add_class.setText("Add")
        add_class.clicked.connect(lambda: self.add_label_class(self.new_class_edit.text()))
        self.new_class_edit.returnPressed.connect(lambda: self.add_label_class(self.new_class_edit.text()))
        class_row.addWidget(self.new_class_edit, 1)
        class_row.addWidget(add_class)
        form.addRow("", class_row)
        tools = QHBoxLayout()
        self.draw_button = QPushButton("Draw", self)
        self.draw_button.setCheckable(True)
        self.draw_button.setToolTip("Left click adds a vertex, right click or Enter closes the polygon")
        self.pick_button = QPushButton("Pick", self)
        self.pick_button.setCheckable(True)
        self.pick_button.setToolTip("Click a polygon of the label layer to give it the ticked classes")
        self.undo_button = QPushButton("Undo", self)
        self.draw_button.toggled.connect(lambda on: self._activate_tool("draw", on))
        self.pick_button.toggled.connect(lambda on: self._activate_tool("pick", on))
        self.undo_button.clicked.connect(self.undo_label)
        for b in (self.draw_button, self.pick_button, self.undo_button):
            tools.addWidget(b)
        form.addRow("", tools)
        train_row = QHBoxLayout()
        self.epochs_spin = QSpinBox(self)
        self.epochs_spin.setRange(1, 1000)
        self.epochs_spin.setValue(10)
        self.epochs_spin.setSuffix(" epochs")
        self.parts_combo = QComboBox(self)
        for text, value in TRAIN_PARTS:
            self.parts_combo.addItem(text, value)
        train_row.addWidget(self.epochs_spin)
        train_row.addWidget(self.parts_combo, 1)
        form.addRow("Training", train_row)
        self.finetune_button = QPushButton("Fine-tune", self)
        self.finetune_button.setToolTip(f"Train a new model from the labelled polygons; saved to {user_models_dir()}")
        form.addRow("", self.finetune_button)

    def _canvas(self):
        return self.iface.mapCanvas() if self.iface is not None else None

    # -- the label layer and its classes --------------------------------------------------
    def label_layer(self) -> QgsVectorLayer | None:
        layer = self.label_layer_combo.currentLayer()
        return layer if isinstance(layer, QgsVectorLayer) else None

    def _label_layer_changed(self, layer) -> None:
        self.label_field_combo.setLayer(layer)
        if isinstance(layer, QgsVectorLayer) and layer.fields().indexOf(LABEL_FIELD) >= 0:
            self.label_field_combo.setField(LABEL_FIELD)
        if self.label_tool is not None:
            self.label_tool.layer = layer
        self.fill_classes()

    def fill_classes(self) -> None:
        """List the model's classes, then the label layer's scheme and the analyst's own; keep the ticks."""
        checked = set(self.checked_classes())
        info = self._current_model()
        classes = list(info.classes) if info is not None else []
        layer = self.label_layer()
        for name, color in (read_scheme(layer) if layer is not None else []) + self._extra_classes:
            if name not in [n for n, _ in classes]:
                classes.append((name, color))
        self.label_class_list.clear()
        for name, color in classes:
            item = QListWidgetItem(swatch(color), name, self.label_class_list)
            item.setData(Qt.UserRole, color)
            item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
            item.setCheckState(Qt.Checked if name in checked else Qt.Unchecked)

    def label_classes(self) -> list[tuple[str, str]]:
        return [(self.label_class_list.item(i).text(), self.label_class_list.item(i).data(Qt.UserRole))
                for i in range(self.label_class_list.count())]

    def checked_classes(self) -> list[str]:
        return [self.label_class_list.item(i).text() for i in range(self.label_class_list.count())
                if self.label_class_list.item(i).checkState() == Qt.Checked]

    def set_checked_classes(self, names: list[str]) -> None:
        for i in range(self.label_class_list.count()):
            item = self.label_class_list.item(i)
            item.setCheckState(Qt.Checked if item.text() in names else Qt.Unchecked)

    def add_label_class(self, name: str, color: str | None = None) -> None:
        """A class of the analyst's own: listed, ticked, and saved in the label layer's scheme."""
        name = " ".join((name or "").replace(SEPARATOR, " ").split())
        if not name:
            return
        if name not in [n for n, _ in self.label_classes()]:
            color = color or NEW_CLASS_COLORS[len(self._extra_classes) % len(NEW_CLASS_COLORS)]
            self._extra_classes.append((name, color))
            self.fill_classes()
            self._save_scheme()
        self.set_checked_classes(self.checked_classes() + [name])
        self.new_class_edit.clear()

    def new_classes(self) -> list[tuple[str, str]]:
        """The listed classes the chosen model does not know: the fine-tuned model's new ones."""
        info = self._current_model()
        known = {n for n, _ in info.classes} if info is not None else set()
        return [(n, c) for n, c in self.label_classes() if n not in known]

    def _save_scheme(self) -> None:
        layer = self.label_layer()
        if layer is not None:
            write_scheme(layer, self.new_classes() or self._extra_classes)

    def _new_label_layer(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "New MoSAiC label layer", "", "GeoPackage (*.gpkg)")
        if path:
            self.new_label_layer(path if path.endswith(".gpkg") else path + ".gpkg")

    def new_label_layer(self, path: str) -> QgsVectorLayer | None:
        """Create a label GeoPackage in the canvas CRS, add it to the project and select it."""
        canvas = self._canvas()
        crs = canvas.mapSettings().destinationCrs() if canvas is not None else QgsProject.instance().crs()
        if not crs.isValid():
            crs = QgsCoordinateReferenceSystem("EPSG:4326")
        try:
            layer = create_label_layer(path, crs, Path(path).stem)
        except ValueError as e:
            self._message(str(e), Qgis.Critical)
            return None
        QgsProject.instance().addMapLayer(layer)
        self.label_layer_combo.setLayer(layer)
        self._save_scheme()
        return layer

    # -- the map tools ----------------------------------------------------------------------
    def _activate_tool(self, mode: str, on: bool) -> None:
        canvas = self._canvas()
        if canvas is None:
            return
        if on:
            from .map_tools.label_tool import LabelTool

            other = self.pick_button if mode == "draw" else self.draw_button
            other.blockSignals(True)
            other.setChecked(False)
            other.blockSignals(False)
            if self.label_tool is None:
                self.label_tool = LabelTool(canvas)
                self.label_tool.polygonFinished.connect(self.label_polygon)
                self.label_tool.featurePicked.connect(self.label_feature)
            self.label_tool.mode = mode
            self.label_tool.layer = self.label_layer()
            canvas.setMapTool(self.label_tool)
        elif self.label_tool is not None and canvas.mapTool() is self.label_tool and \
                not (self.draw_button.isChecked() or self.pick_button.isChecked()):
            canvas.unsetMapTool(self.label_tool)

    def _labelling_target(self) -> tuple[QgsVectorLayer, list[str]] | None:
        layer = self.label_layer()
        if layer is None:
            self._message("Choose a label layer, or create one with New….", Qgis.Warning)
            return None
        labels = self.checked_classes()
        if not labels:
            self._message("Tick at least one class for the polygon.", Qgis.Warning)
            return None
        return layer, labels

    def label_polygon(self, geometry) -> bool:
        """Store a polygon drawn on the canvas (canvas CRS) with the ticked classes."""
        from .map_tools.label_tool import transform_geometry

        target = self._labelling_target()
        if target is None:
            return False
        layer, labels = target
        canvas = self._canvas()
        source = canvas.mapSettings().destinationCrs() if canvas is not None else layer.crs()
        field = self.label_field_combo.currentField() or LABEL_FIELD
        if field != LABEL_FIELD:
            self._message(f"Drawing writes the '{LABEL_FIELD}' field; layer '{layer.name()}' uses '{field}'.",
                          Qgis.Warning)
        ok = add_labelled_polygon(layer, transform_geometry(geometry, source, layer.crs()), labels)
        layer.triggerRepaint()
        self._status(f"Labelled polygon: {'; '.join(labels)} ({layer.featureCount()} in '{layer.name()}')")
        return ok

    def label_feature(self, fid: int) -> bool:
        """Give a picked feature the ticked classes."""
        target = self._labelling_target()
        if target is None:
            return False
        layer, labels = target
        ok = set_feature_labels(layer, fid, labels, self.label_field_combo.currentField() or LABEL_FIELD)
        layer.triggerRepaint()
        return ok

    def undo_label(self) -> None:
        layer = self.label_layer()
        if layer is not None and layer.isEditable():
            layer.undoStack().undo()
            layer.triggerRepaint()

    def shutdown(self) -> None:
        """Take the label tool off the canvas and drop it (plugin unload)."""
        if self.label_tool is not None:
            canvas = self._canvas()
            if canvas is not None and canvas.mapTool() is self.label_tool:
                canvas.unsetMapTool(self.label_tool)
            self.label_tool.clean()
            self.label_tool = None
