"""The labelling map tool: draw a polygon (left click adds a vertex, right click or
Enter finishes, Esc or Backspace edits) or pick an existing polygon of the label layer.

The tool only collects geometry and emits it; the dock decides the labels and writes the
feature through ``labels`` (edit buffer, so undo works). ``add_vertex``/``finish``/``pick``
are the same steps the mouse takes, callable from code and tests.
"""

from __future__ import annotations

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsFeatureRequest,
    QgsGeometry,
    QgsPointXY,
    QgsProject,
    QgsRectangle,
    QgsVectorLayer,
    QgsWkbTypes,
)
from qgis.gui import QgsMapCanvas, QgsMapMouseEvent, QgsMapTool, QgsRubberBand
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtGui import QColor, QKeyEvent


class LabelTool(QgsMapTool):
    """Draws polygons (mode 'draw') or picks label-layer features (mode 'pick') on ``canvas``."""

    polygonFinished = pyqtSignal(QgsGeometry)  # in the canvas CRS
    featurePicked = pyqtSignal(int)  # feature id in ``layer``

    def __init__(self, canvas: QgsMapCanvas, mode: str = "draw") -> None:
        super().__init__(canvas)
        self.canvas_ = canvas
        self.mode = mode
        self.layer: QgsVectorLayer | None = None
        self.points: list[QgsPointXY] = []
        self.band = QgsRubberBand(canvas, QgsWkbTypes.PolygonGeometry)
        self.band.setColor(QColor(255, 64, 0, 200))
        self.band.setFillColor(QColor(255, 64, 0, 50))
        self.band.setWidth(2)
        self.setCursor(Qt.CrossCursor)

    # -- steps (mouse and code) ------------------------------------------------------------
    def add_vertex(self, point: QgsPointXY) -> None:
        self.points.append(QgsPointXY(point))
        self._redraw()

    def undo_vertex(self) -> None:
        if self.points:
            self.points.pop()
            self._redraw()

    def finish(self) -> QgsGeometry | None:
        """Close the polygon; emits and returns it (None and nothing emitted under 3 vertices)."""
        points, self.points = self.points, []
        self._redraw()
        if len(points) < 3:
            return None
        geometry = QgsGeometry.fromPolygonXY([points + [points[0]]])
        if not geometry.isGeosValid():
            geometry = geometry.makeValid()
        self.polygonFinished.emit(geometry)
        return geometry

    def cancel(self) -> None:
        self.points = []
        self._redraw()

    def pick(self, point: QgsPointXY) -> int | None:
        """The label-layer feature under ``point`` (canvas CRS); emits its id."""
        if self.layer is None:
            return None
        to_layer = QgsCoordinateTransform(self.canvas_.mapSettings().destinationCrs(), self.layer.crs(),
                                          QgsProject.instance())
        p = to_layer.transform(point)
        tol = self.canvas_.mapUnitsPerPixel() * 3 if self.layer.crs() == self.canvas_.mapSettings().destinationCrs() else 0
        rect = QgsRectangle(p.x() - tol, p.y() - tol, p.x() + tol, p.y() + tol)
        geom_p = QgsGeometry.fromPointXY(p)
        for feature in self.layer.getFeatures(QgsFeatureRequest().setFilterRect(rect)):
            if feature.geometry().contains(geom_p) or tol and feature.geometry().intersects(QgsGeometry.fromRect(rect)):
                self.featurePicked.emit(feature.id())
                return feature.id()
        return None

    def _redraw(self) -> None:
        self.band.reset(QgsWkbTypes.PolygonGeometry)
        for i, p in enumerate(self.points):
            self.band.addPoint(p, i == len(self.points) - 1)

    # -- mouse and keys --------------------------------------------------------------------
    def canvasReleaseEvent(self, event: QgsMapMouseEvent) -> None:  # noqa: N802 (QGIS API)
        point = self.toMapCoordinates(event.pos())
        if self.mode == "pick":
            if event.button() == Qt.LeftButton:
                self.pick(point)
            return
        if event.button() == Qt.LeftButton:
            self.add_vertex(point)
        elif event.button() == Qt.RightButton:
            self.finish()

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 (QGIS API)
        if event.key() in (Qt.Key_Return, Qt.Key_Enter):
            self.finish()
        elif event.key() == Qt.Key_Escape:
            self.cancel()
        elif event.key() in (Qt.Key_Backspace, Qt.Key_Delete):
            self.undo_vertex()
        else:
            event.ignore()

    def deactivate(self) -> None:
        self.cancel()
        super().deactivate()

    def clean(self) -> None:
        """Remove the rubber band from the canvas (tool dropped)."""
        self.cancel()
        self.canvas_.scene().removeItem(self.band)


def transform_geometry(geometry: QgsGeometry, source: QgsCoordinateReferenceSystem,
                       target: QgsCoordinateReferenceSystem) -> QgsGeometry:
    """A copy of ``geometry`` in ``target``."""
    out = QgsGeometry(geometry)
    if source != target:
        out.transform(QgsCoordinateTransform(source, target, QgsProject.instance()))
    return out
