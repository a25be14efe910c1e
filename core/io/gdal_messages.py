"""How GDAL reports errors to the plugin: raised inside our own calls, never printed twice.

GDAL prints every failed read to stderr ("ERROR 1: TIFFFillTile: Read error ...": ten lines
for one damaged tile, from each reading thread) before the run's own one-line error, which
already carries GDAL's reason and says what to do: the command line and the Dask workers turn
that printing off (``quiet_gdal_printing``). Inside QGIS, osgeo.gdal is shared with QGIS and
the other plugins, so the engine never switches GDAL's exception mode for the whole process: it
sets the mode its own calls need for them only (``gdal_exceptions``).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator


def quiet_gdal_printing() -> None:
    """GDAL keeps recording each error (the engine's messages quote it) but prints none."""
    from osgeo import gdal

    gdal.SetErrorHandler("CPLQuietErrorHandler")


@contextmanager
def gdal_exceptions(on: bool = True) -> Iterator[Any]:
    """osgeo.gdal with its errors raised as RuntimeError (``on``) or returned as None / error codes
    (not ``on``) inside the block, and the process's own setting (QGIS's, another plugin's) back
    after it."""
    from osgeo import gdal

    changed = gdal.GetUseExceptions() != on
    if changed:
        (gdal.UseExceptions if on else gdal.DontUseExceptions)()
    try:
        yield gdal
    finally:
        if changed:
            (gdal.DontUseExceptions if on else gdal.UseExceptions)()
