"""Labelled polygons from any vector file GDAL/OGR reads (GeoPackage, GeoJSON, Shapefile, ...):
what the command line and scripts fine-tune from (QGIS passes its layers' features instead)."""
from __future__ import annotations

import json
from pathlib import Path

from .samples import LabelledPolygon, parse_labels


def read_label_file(path: str | Path, field: str = "labels", separator: str = ";",
                    layer: str | None = None) -> tuple[list[LabelledPolygon], str]:
    """(polygons, CRS as WKT) of a vector file: each polygon feature's ``field`` value split by
    ``separator`` into class names (``samples.parse_labels``). Features that are not polygons are
    left out; a missing file, layer or field, or a layer without a CRS, is a ValueError that says
    what to do."""
    from osgeo import ogr, osr  # GDAL's own bindings: present wherever rasterio's GDAL is

    path = str(path)
    if not Path(path).exists() and not path.startswith("/vsi"):
        raise FileNotFoundError(f"label file {path} not found")
    ds = ogr.Open(path)
    if ds is None:
        raise ValueError(f"{path} is not a vector file GDAL can read (GeoPackage, GeoJSON, Shapefile, ...)")
    try:
        if layer is None:
            if ds.GetLayerCount() != 1:
                names = [ds.GetLayerByIndex(i).GetName() for i in range(ds.GetLayerCount())]
                raise ValueError(f"{path} holds {len(names)} layers ({', '.join(names)}): name the one with the "
                                 f"polygons")
            lyr = ds.GetLayerByIndex(0)
        else:
            lyr = ds.GetLayerByName(layer)
            if lyr is None:
                raise ValueError(f"{path} has no layer '{layer}'")
        defn = lyr.GetLayerDefn()
        fields = [defn.GetFieldDefn(i).GetName() for i in range(defn.GetFieldCount())]
        if field not in fields:
            raise ValueError(f"the label layer has no field '{field}' (its fields: {', '.join(fields) or 'none'}): "
                             f"name the field that holds each polygon's class name(s)")
        srs = lyr.GetSpatialRef()
        if srs is None:
            raise ValueError(f"{path} has no coordinate reference system: save it with one (e.g. the scene's)")
        srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
        polygons = []
        for feat in lyr:
            geom = feat.GetGeometryRef()
            if geom is None:
                continue
            geom = geom.Clone()
            geom.FlattenTo2D()
            if ogr.GT_Flatten(geom.GetGeometryType()) not in (ogr.wkbPolygon, ogr.wkbMultiPolygon):
                continue
            polygons.append(LabelledPolygon(json.loads(geom.ExportToJson()),
                                            parse_labels(feat.GetField(field), separator), feat.GetFID()))
        return polygons, srs.ExportToWkt()
    finally:
        ds = None  # noqa: F841 (closes the file)
