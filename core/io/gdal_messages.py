"""GDAL's own printing of errors, off for command-line runs and cluster workers.

GDAL prints every failed read to stderr ("ERROR 1: TIFFFillTile: Read error ...": ten lines
for one damaged tile, from each reading thread) before the run's own one-line error, which
already carries GDAL's reason and says what to do. The command line and the Dask workers turn
that printing off; inside QGIS nothing changes (QGIS shows GDAL's messages in its log panel).
"""
from __future__ import annotations


def quiet_gdal_printing() -> None:
    """GDAL keeps recording each error (the engine's messages quote it) but prints none."""
    from osgeo import gdal

    gdal.SetErrorHandler("CPLQuietErrorHandler")
