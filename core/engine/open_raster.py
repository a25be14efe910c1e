"""Opening input rasters for the engine's reads.

Uncompressed GeoTIFFs (SNAP exports, stacks written without compression) are opened with
GDAL's ``GTIFF_DIRECT_IO``: a window is then read from the file straight into the result,
past GDAL's block cache. Through the cache, a pixel-interleaved file is split into per-band
tiles and interleaved again: 5-7x slower for a block of 12 bands, and 10x for the SAR unit
check's small windows (``tests/core/test_band_reader.py`` checks both paths give the same
values). GDAL reads the option when it opens the file, and ignores it for compressed files.
"""
from __future__ import annotations

import rasterio


def open_for_blocks(path: str) -> rasterio.DatasetReader:
    """``path`` opened for block reads (module docstring). The option is set only while the
    file opens (and, outside the main thread, only for the calling thread)."""
    with rasterio.Env(GTIFF_DIRECT_IO="YES"):
        return rasterio.open(path)
