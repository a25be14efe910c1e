"""Opening input rasters for the engine's reads.

Uncompressed GeoTIFFs (SNAP exports, stacks written without compression) are opened with
GDAL's ``GTIFF_DIRECT_IO``: a window is then read from the file straight into the result,
past GDAL's block cache. Through the cache, a pixel-interleaved file is split into per-band
tiles and interleaved again: 5-7x slower for a block of 12 bands, and 10x for the SAR unit
check's small windows (``tests/core/test_band_reader.py`` checks both paths give the same
values). GDAL ignores it for compressed files.

JPEG 2000 files are decoded on all cores (``GDAL_NUM_THREADS``: a read's tiles in parallel).
GeoTIFFs are not, whatever their compression: GDAL 3.6's multi-threaded GeoTIFF decoding
returns a tile it cannot decode (a damaged file, or a download cut short) as zeros without an
error, so a run would write classes for pixels that were never read; and it crashed the
process on a compressed, band-interleaved GeoTIFF's mask ("Bad value 2 for ExtraSamples",
then a segmentation fault, 3 runs of 3). On one thread both are a clear error. GDAL reads
both options when it opens the file, so they are set only then.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import rasterio
from rasterio.enums import MaskFlags

GEOTIFF_DRIVERS = {"GTiff", "COG"}
GEOTIFF_SUFFIXES = (".tif", ".tiff", ".gtif")


def open_for_blocks(path: str) -> rasterio.DatasetReader:
    """``path`` opened for block reads (module docstring). The options are set only while the
    file opens (and, outside the main thread, only for the calling thread). One decoding thread
    is asked for explicitly: GDAL would otherwise take ``GDAL_NUM_THREADS`` from the environment
    or from a global setting made by other code in the process (QGIS, another plugin)."""
    with rasterio.Env(GTIFF_DIRECT_IO="YES", GDAL_NUM_THREADS="1"):
        src = rasterio.open(path)
    if not decodes_safely_on_threads(src):
        return src
    src.close()
    with rasterio.Env(GTIFF_DIRECT_IO="YES", GDAL_NUM_THREADS="ALL_CPUS"):
        return rasterio.open(path)


def decodes_safely_on_threads(src: rasterio.DatasetReader) -> bool:
    """True when GDAL may decode ``src``'s tiles on several threads: no GeoTIFF among its files
    (itself, or the band files of a VRT) and no mask of its own (module docstring)."""
    files = [src.name, *src.files]
    return (src.driver not in GEOTIFF_DRIVERS and not has_own_mask(src)
            and not any(str(f).lower().endswith(GEOTIFF_SUFFIXES) for f in files))


def has_own_mask(src: rasterio.DatasetReader) -> bool:
    """True when a band's no-data comes from a mask stored beside the values (internal, .msk,
    alpha), not from a no-data value."""
    return any(MaskFlags.per_dataset in f or MaskFlags.alpha in f for f in src.mask_flag_enums)


def mask_plan(src: rasterio.DatasetReader, indexes: Sequence[int]) -> tuple[str, object]:
    """How a direct read finds no-data: ('none', None) all valid or NaN no-data (NaN stays NaN);
    ('nodata', [(band position or None for all, value)]); ('dataset', [one band]) a mask shared
    by all bands; ('bands', indexes) anything else, through GDAL's per-band masks."""
    flags = [src.mask_flag_enums[i - 1] for i in indexes]
    nodata = [src.nodatavals[i - 1] for i in indexes]
    if all(f == [MaskFlags.all_valid] for f in flags):
        return "none", None
    if all(f == [MaskFlags.nodata] for f in flags):
        vals = [(k, np.float32(v)) for k, v in enumerate(nodata) if v is not None and not math.isnan(v)]
        if not vals:
            return "none", None
        if len({float(v) for _, v in vals}) == 1 and len(vals) == len(indexes):
            return "nodata", [(None, vals[0][1])]
        return "nodata", vals
    if all(MaskFlags.per_dataset in f for f in flags):
        return "dataset", [indexes[0]]
    return "bands", list(indexes)


GENERIC_READ_ERRORS = ("Read failed. See previous exception for details.",)


def gdal_reason(e: BaseException) -> str:
    """What GDAL said about a failed open or read. rasterio 1.4 raises "Read failed. See previous
    exception for details." with GDAL's own message on the exception it chains: the user needs
    that one ("TIFFReadEncodedTile() failed", "Cannot read tile ..."), so the chain is walked."""
    seen: list[str] = []
    while e is not None and len(seen) < 8:
        text = str(e).strip()
        if text and text not in GENERIC_READ_ERRORS and text not in seen:
            seen.append(text)
        e = e.__cause__ or e.__context__
    return "; ".join(seen).rstrip(".") or "GDAL gave no reason"
