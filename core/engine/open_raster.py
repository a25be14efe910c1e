"""Opening input rasters for the engine's reads.

Uncompressed GeoTIFFs (SNAP exports, stacks written without compression) are opened with
GDAL's ``GTIFF_DIRECT_IO``: a window is then read from the file straight into the result,
past GDAL's block cache. Through the cache, a pixel-interleaved file is split into per-band
tiles and interleaved again: 5-7x slower for a block of 12 bands, and 10x for the SAR unit
check's small windows (``tests/core/test_band_reader.py`` checks both paths give the same
values). GDAL ignores it for compressed files; those are decoded on all cores instead
(``GDAL_NUM_THREADS``: a block's tiles in parallel; 2176² x 12 bands of deflate-compressed
512 px tiles 1.4-1.7 s -> 0.5-0.7 s on 2 cores, whole 4096² runs 1.12x faster). GDAL reads
both options when it opens the file, so they are set only then.
"""
from __future__ import annotations

import rasterio
from rasterio.enums import MaskFlags


def open_for_blocks(path: str) -> rasterio.DatasetReader:
    """``path`` opened for block reads (module docstring). The options are set only while the
    file opens (and, outside the main thread, only for the calling thread).

    A file with a mask of its own (internal or .msk) is decoded on one thread: GDAL 3.6's
    multi-threaded decoding of a compressed, band-interleaved GeoTIFF's mask crashed the process
    ("Bad value 2 for ExtraSamples", then a segmentation fault, in 3 runs of 3)."""
    with rasterio.Env(GTIFF_DIRECT_IO="YES", GDAL_NUM_THREADS="ALL_CPUS"):
        src = rasterio.open(path)
    if not has_own_mask(src):
        return src
    src.close()
    with rasterio.Env(GTIFF_DIRECT_IO="YES"):
        return rasterio.open(path)


def has_own_mask(src: rasterio.DatasetReader) -> bool:
    """True when a band's no-data comes from a mask stored beside the values (internal, .msk,
    alpha), not from a no-data value."""
    return any(MaskFlags.per_dataset in f or MaskFlags.alpha in f for f in src.mask_flag_enums)
