"""Label layers as QGIS sees them: the GeoPackage of drawn polygons, its class scheme, and
the conversion of any polygon layer's features to what ``core.fewshot`` takes.

A label layer has the fields ``labels`` (class names separated by ';') and ``created``
(date-time). Its class scheme (names and colours) is a JSON file beside the GeoPackage,
``NAME.classes.json``, so it travels with the layer. Edits go through the layer's edit
buffer: QGIS's undo stack and editing tools work on them as on any layer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from qgis.core import (
    Qgis,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransformContext,
    QgsFeature,
    QgsFeatureRequest,
    QgsField,
    QgsFields,
    QgsGeometry,
    QgsVectorFileWriter,
    QgsVectorLayer,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QDateTime, QMetaType, QVariant

LABEL_FIELD = "labels"
CREATED_FIELD = "created"
SEPARATOR = ";"
SCHEME_SUFFIX = ".classes.json"
TOOL_EDIT = "MoSAiC: "  # the undo-stack names of the labelling tool's own edits


def split_labels(value: Any, separator: str = SEPARATOR) -> list[str]:
    """A field value as class names (no maths: the same rule as ``core.fewshot.parse_labels``)."""
    if value is None or (hasattr(value, "isNull") and value.isNull()):
        return []
    out: list[str] = []
    for part in str(value).split(separator) if separator else [str(value)]:
        part = " ".join(part.split())
        if part and part not in out:
            out.append(part)
    return out


def layer_file(layer: QgsVectorLayer) -> Path | None:
    """The file behind an OGR layer (``path.gpkg|layername=x`` -> ``path.gpkg``)."""
    if layer is None or layer.providerType() != "ogr":
        return None
    return Path(layer.source().split("|")[0])


def scheme_path(layer: QgsVectorLayer) -> Path | None:
    path = layer_file(layer)
    return path.with_name(path.stem + SCHEME_SUFFIX) if path is not None else None


def read_scheme(layer: QgsVectorLayer) -> list[tuple[str, str]]:
    """(name, '#rrggbb') of the layer's class scheme; empty when it has none."""
    path = scheme_path(layer)
    if path is None or not path.is_file():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [(str(c["name"]), str(c.get("color") or "#808080")) for c in data.get("classes", []) if c.get("name")]


def write_scheme(layer: QgsVectorLayer, classes: list[tuple[str, str]]) -> Path | None:
    """Save the class scheme beside the layer's file."""
    path = scheme_path(layer)
    if path is None:
        return None
    path.write_text(json.dumps({"classes": [{"name": n, "color": c} for n, c in classes]}, indent=2),
                    encoding="utf-8")
    return path


def qt_field(name: str, type_name: str) -> QgsField:
    """A field of a Qt type, in the form this QGIS takes without a deprecation warning: QMetaType
    from QGIS 3.38 on, QVariant before (3.22 knows no other)."""
    if Qgis.QGIS_VERSION_INT >= 33800:
        return QgsField(name, getattr(QMetaType.Type, type_name))
    return QgsField(name, getattr(QVariant, type_name[1:]))


def create_label_layer(path: str | Path, crs: QgsCoordinateReferenceSystem, name: str = "MoSAiC labels") -> QgsVectorLayer:
    """A new GeoPackage polygon layer with the label fields (overwrites ``path``)."""
    fields = QgsFields()
    fields.append(qt_field(LABEL_FIELD, "QString"))
    fields.append(qt_field(CREATED_FIELD, "QDateTime"))
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = "GPKG"
    options.layerName = "labels"
    writer = QgsVectorFileWriter.create(str(path), fields, QgsWkbTypes.MultiPolygon, crs,
                                        QgsCoordinateTransformContext(), options)
    if writer.hasError() != QgsVectorFileWriter.NoError:
        raise ValueError(f"cannot create the label layer {path}: {writer.errorMessage()}")
    del writer
    layer = QgsVectorLayer(f"{path}|layername=labels", name, "ogr")
    if not layer.isValid():
        raise ValueError(f"cannot open the label layer {path}")
    return layer


def add_labelled_polygon(layer: QgsVectorLayer, geometry: QgsGeometry, labels: list[str]) -> bool:
    """Add one polygon through the edit buffer (one undo step); the layer is left in edit mode."""
    if not layer.isEditable():
        layer.startEditing()
    feature = QgsFeature(layer.fields())
    geom = QgsGeometry(geometry)
    if not geom.isMultipart():
        geom.convertToMultiType()
    feature.setGeometry(geom)
    feature[LABEL_FIELD] = SEPARATOR.join(labels)
    feature[CREATED_FIELD] = QDateTime.currentDateTime()
    layer.beginEditCommand(f"{TOOL_EDIT}add labelled polygon")
    ok = layer.addFeature(feature)
    layer.endEditCommand() if ok else layer.destroyEditCommand()
    return ok


def set_feature_labels(layer: QgsVectorLayer, fid: int, labels: list[str], field: str = LABEL_FIELD) -> bool:
    """Relabel an existing feature (picked on the map) through the edit buffer."""
    if not layer.isEditable():
        layer.startEditing()
    idx = layer.fields().indexOf(field)
    if idx < 0:
        raise ValueError(f"layer '{layer.name()}' has no field '{field}'")
    layer.beginEditCommand(f"{TOOL_EDIT}relabel polygon")
    ok = layer.changeAttributeValue(fid, idx, SEPARATOR.join(labels))
    layer.endEditCommand() if ok else layer.destroyEditCommand()
    return ok


def save_edits(layer: QgsVectorLayer) -> bool:
    """Write the layer's pending edits to its file and stay in edit mode (the analyst goes on
    drawing): a model's card then describes polygons that are on disk. True when there was
    something to save; ValueError with the provider's reasons when it cannot be saved."""
    if not (layer.isEditable() and layer.isModified()):
        return False
    if not layer.commitChanges(False):
        raise ValueError(f"The edits of '{layer.name()}' could not be saved ({'; '.join(layer.commitErrors())}): "
                         f"save or discard them (Layer > Save Layer Edits), then fine-tune.")
    return True


def foreign_edits(layer: QgsVectorLayer) -> list[str]:
    """The unsaved edits of ``layer`` that the labelling tool did not make (its own are named
    "MoSAiC: ..."), as QGIS names them ("Delete feature", ...): saving before fine-tuning saves
    them too, so the analyst is asked first."""
    if not (layer.isEditable() and layer.isModified()):
        return []
    stack = layer.undoStack()
    return [stack.text(i) for i in range(stack.index()) if not stack.text(i).startswith(TOOL_EDIT)]


def crs_string(crs: QgsCoordinateReferenceSystem) -> str:
    return crs.authid() or crs.toWkt()


def features_to_polygons(source, field: str, separator: str = SEPARATOR, feedback=None) -> list[Any]:
    """Features of a polygon layer or feature source as ``core.fewshot.LabelledPolygon``s.

    Raises:
        ValueError: the layer has no such field, or is not a polygon layer.
    """
    from ..core.fewshot.samples import LabelledPolygon  # lazy: core pulls in numpy/torch

    fields = source.fields()
    if fields.indexOf(field) < 0:
        names = ", ".join(f.name() for f in fields)
        raise ValueError(f"the label layer has no field '{field}' (fields: {names})")
    if QgsWkbTypes.geometryType(source.wkbType()) != QgsWkbTypes.PolygonGeometry:
        raise ValueError("the label layer must be a polygon layer")
    out = []
    for feature in source.getFeatures(QgsFeatureRequest()):
        if feedback is not None and feedback.isCanceled():
            break
        geom = feature.geometry()
        if geom is None or geom.isEmpty():
            continue
        out.append(LabelledPolygon(json.loads(geom.asJson(17)), split_labels(feature[field], separator), feature.id()))
    return out
