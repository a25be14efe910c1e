"""Decode an expensive input once, into a temporary uncompressed GeoTIFF, before a run.

Dense blocks are read with a halo, so the tiles along every block edge are decoded twice
(once per neighbouring block) and the engine's cache drops (``band_reader``) keep GDAL from
holding them. For deflate GeoTIFFs in 512 px tiles that costs a few per cent; for JPEG 2000, Sentinel-2's own
format, it dominates a run: a 4098² 12-band L1C scene stacked from JP2 band files (1024 px
tiles, lossless) took 99-110 s against 16 s for the same bands as deflate GeoTIFFs.
``stage`` copies the bands the model uses (of an input on the reference grid, only the part
the grid covers; a warped input whole) into a band-interleaved uncompressed GeoTIFF that the
engine then reads past GDAL's cache (``open_raster``), each tile decoded once, on all cores:
that run takes 24-26 s (``benchmarks/jp2_staging.py``, 3.9-4.3x faster). Band files compressed in
tiles of 1024 px or more (Sentinel-2 COGs) are staged too (``slow_to_decode``: 1.4x faster). The
values are those a block read would
have got, so the outputs do not change; an input whose copy would not read the same
(``why_not_exact``: bands of different types or no-data values, per-band masks, alpha) is
read as it is.

The staged file goes beside the outputs (hidden) and is deleted when the run ends. It takes
bands x pixels x the type's size on disk (2.9 GB for a full 10980² tile, 12 bands of uint16).
Where that space is missing, the copy is ZSTD-compressed (``compress``: the benchmark's real L1C
bands 2.3x smaller; its whole run 1.13-1.24x the time of one with the uncompressed copy and still
3.5-3.7x faster than reading the JPEG 2000 files), within the room left (``max_bytes``:
``CopyTooLarge`` when it outgrows it, and the input is read as it is).
"""
from __future__ import annotations

import math
import os
import shutil
import traceback
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import rasterio
from rasterio.enums import MaskFlags
from rasterio.errors import RasterioIOError
from rasterio.windows import Window

from ..io.gdal_messages import gdal_exceptions
from .align import Grid
from .band_reader import grid_offset
from .open_raster import decodes_safely_on_threads
from .windows import aligned_cuts

STAGE_MODES = ("auto", "always", "never")
JPEG2000_DRIVERS = {"JP2OpenJPEG", "JP2KAK", "JP2ECW", "JPEG2000", "JP2MrSID", "JP2Lura"}
JPEG2000_SUFFIXES = {".jp2", ".j2k", ".j2c", ".jpx", ".jpf"}
HEADER_BYTES = 64 * 1024
STRIP_ROWS = 1024  # rows of the strips a staging copy goes by
TILE = 512         # the staged file's tiles
LARGE_TILES = 1024  # band files tiled this large are decoded once first (``_large_compressed_tiles``)
PACKED_WINDOW = 2 * TILE  # the windows a compressed pixel-interleaved copy goes by, on its own tiles
# a compressed copy: fast ZSTD, on all cores; the predictor (2: integer differences, 3: floats)
# makes Sentinel-2 reflectance ~20 % smaller than ZSTD alone
COMPRESSED = ["COMPRESS=ZSTD", "ZSTD_LEVEL=1", "NUM_THREADS=ALL_CPUS"]


class CopyTooLarge(Exception):
    """A compressed copy outgrew the room it was given (``stage``'s ``max_bytes``)."""


def slow_to_decode(src: rasterio.DatasetReader) -> str | None:
    """Why reading ``src`` block by block repeats expensive decoding ("JPEG 2000", or
    "JPEG 2000 band files" for a VRT or product made of them, or compressed band files in large
    tiles), None when it does not."""
    if src.driver in JPEG2000_DRIVERS:
        return "JPEG 2000"
    if any(Path(f).suffix.lower() in JPEG2000_SUFFIXES for f in src.files[1:]):
        return "JPEG 2000 band files"
    if src.driver == "VRT":
        tile = _large_compressed_tiles(src.files[1:])
        if tile:
            return f"compressed band files in {tile} px tiles"
    return None


def _large_compressed_tiles(files: Sequence[str]) -> int | None:
    """The widest tiles (``LARGE_TILES`` px or more) of the compressed, tiled files among
    ``files``, None if none. A VRT's band files are read through it block by block, each read
    decoding whole tiles of every band: with Sentinel-2 COGs' 1024 px tiles that is several
    times each tile, and decoding once first is 1.4x faster (``benchmarks/jp2_staging.py
    --codec deflate --tile 1024``: 1.39x at 4098², 1.36-1.47x at 6144²); with 512 px tiles it
    is not (0.84-0.92x)."""
    widest = None
    for f in files:
        try:
            with rasterio.open(f) as b:
                tw = b.block_shapes[0][1]
                if b.compression is not None and tw < b.width and tw >= LARGE_TILES:
                    widest = max(widest or 0, tw)
        except RasterioIOError:
            continue  # not a raster of its own (e.g. a mask or an overview file)
    return widest


def mask_kind(src: rasterio.DatasetReader, indexes: Sequence[int]) -> str | None:
    """How the bands ``indexes`` mark no-data, as far as a staged copy can keep it: "values"
    (no mask, or no-data values, copied with the bands), "dataset" (one mask for all bands,
    internal or .msk, copied as the copy's mask), None otherwise (per-band masks, or an alpha
    band, whose partial values a warp would weigh: the input is read as it is)."""
    flags = [src.mask_flag_enums[i - 1] for i in indexes]
    if all(f == [MaskFlags.all_valid] or f == [MaskFlags.nodata] for f in flags):
        return "values"  # no-data values that differ from band to band: ``why_not_exact``
    if all(MaskFlags.per_dataset in f and MaskFlags.alpha not in f for f in flags):
        return "dataset"
    return None


def why_not_exact(src: rasterio.DatasetReader, indexes: Sequence[int], direct: bool) -> str | None:
    """Why a staged copy of bands ``indexes`` would not read as ``src`` does (a GeoTIFF has one
    type and one no-data value for all its bands, and the warper takes ``src``'s first band's
    no-data for all), None when it would."""
    if mask_kind(src, indexes) is None:
        return "per-band masks or an alpha band"
    if len({src.dtypes[i - 1] for i in indexes}) > 1:
        return "bands of different data types"
    nodata = {_key(src.nodatavals[i - 1]) for i in indexes}
    if len(nodata) > 1:
        return "bands with different no-data values"
    if not direct and nodata != {_key(src.nodata)}:
        return "a no-data value that differs from the first band's"
    return None


def _key(v: float | None) -> object:
    """A no-data value as a set member (NaN equal to NaN)."""
    return "nan" if v is not None and math.isnan(v) else v


def source_window(src: rasterio.DatasetReader, grid: Grid, direct: bool) -> Window | None:
    """The part of ``src`` that reads on ``grid`` use, in whole pixels, clipped to ``src``;
    None where they do not overlap. ``direct``: ``src`` is on the grid (``band_reader.on_grid``),
    so exactly the grid's pixels. Otherwise the whole input: GDAL's warper sizes its kernel from
    the source window it reads, so a crop changes warped values near the crop's and the grid's
    edges (a margin of 8 source pixels was not enough where the grid reaches past the input)."""
    if not direct:
        return Window(0, 0, src.width, src.height)
    r0, c0 = grid_offset(src.transform, grid)
    col0, row0 = max(0, c0), max(0, r0)
    col1, row1 = min(src.width, c0 + grid.width), min(src.height, r0 + grid.height)
    if col0 >= col1 or row0 >= row1:
        return None
    return Window(col0, row0, col1 - col0, row1 - row0)


def staged_bytes(src: rasterio.DatasetReader, indexes: Sequence[int], win: Window) -> int:
    """Size on disk of ``stage``'s file: whole tiles, uncompressed, its mask and header."""
    w, h = -(-int(win.width) // TILE) * TILE, -(-int(win.height) // TILE) * TILE
    item = np.dtype(src.dtypes[indexes[0] - 1]).itemsize
    mask = w * h if mask_kind(src, indexes) == "dataset" else 0
    return w * h * len(indexes) * item + mask + HEADER_BYTES


def stage(path: str, indexes: Sequence[int], win: Window, out: str,
          progress: Callable[[float], None] | None = None,
          is_cancelled: Callable[[], bool] | None = None,
          compress: bool = False, max_bytes: int | None = None) -> bool:
    """Copy bands ``indexes`` (1-based, in that order) of ``path`` over ``win`` into ``out``,
    a tiled, band-interleaved GeoTIFF with the same CRS, pixel size, types, no-data and dataset
    mask, uncompressed (``compress``: ZSTD). Returns False (and leaves no file) when
    ``is_cancelled`` turned True; raises ``CopyTooLarge`` (and leaves no file) when the file
    grows past ``max_bytes``, checked as each part is written (less room than two uncompressed
    parts is kept back, so that the part that crosses the line still has room on the disk; a
    write that fails on a full disk all the same is ``CopyTooLarge`` too).

    GDAL keeps what it decodes in its cache until the dataset closes, so the copy reopens the
    input as it goes, in the order that decodes each tile once (``_by_bands``, ``_by_windows``)
    and writes each part's output tiles to the file at once.

    Raises ValueError when GDAL cannot read the input (the message names the file)."""
    from osgeo import gdal

    previous = gdal.GetThreadLocalConfigOption("GDAL_NUM_THREADS", None)
    dst, part = None, 0
    try:
        src = _open(path)
        with rasterio.open(path) as r:
            masks, problem = mask_kind(r, indexes), why_not_exact(r, indexes, True)
            threads = decodes_safely_on_threads(r)
        if problem:
            raise RuntimeError(f"a copy would not keep its {problem}")
        # a read's tiles decoded on all cores where GDAL does that safely (open_raster.py)
        gdal.SetThreadLocalConfigOption("GDAL_NUM_THREADS", "ALL_CPUS" if threads else "1")
        dst = _create_like(src, indexes, win, out, compress)
        if masks == "dataset":
            dst.CreateMaskBand(gdal.GMF_PER_DATASET)
        interleave = (src.GetMetadataItem("INTERLEAVE", "IMAGE_STRUCTURE") or "").upper()
        by_windows = src.RasterCount > 1 and interleave == "PIXEL"
        item = gdal.GetDataTypeSize(src.GetRasterBand(indexes[0]).DataType) // 8
        src = None
        # strips of whole output tiles where compressed (``STRIP_ROWS`` is, unless a test changes it)
        strip = -(-STRIP_ROWS // TILE) * TILE if compress else STRIP_ROWS
        w = int(win.width)  # the most a part writes, uncompressed: a strip of one band, or a window
        part = (PACKED_WINDOW * min(w, PACKED_WINDOW) * len(indexes) if by_windows else strip * w) * (item + 1)
        budget = None if max_bytes is None else max_bytes - 2 * part

        def written() -> None:
            """Before the first part and after each: stop a copy that outgrew its room."""
            if budget is not None and staged_size(out) > budget:
                raise CopyTooLarge(f"the compressed copy of {path} outgrew the {max_bytes / 2**20:.0f} MB "
                                   f"of free disk space left for it")

        written()  # a room smaller than the two parts kept back: nothing is decoded
        parts = dict(progress=progress or (lambda f: None), is_cancelled=is_cancelled or (lambda: False),
                     written=written)
        if by_windows:  # a compressed tile written twice takes its room twice: windows on whole output tiles
            done = _by_windows(path, dst, list(indexes), win, masks == "dataset", output_tiles=compress, **parts)
        else:
            done = _by_bands(path, dst, list(indexes), win, masks == "dataset", strip=strip, **parts)
        held, dst = [dst], None
        failed = _close(held)  # a failed write of its last tiles shows when it closes
        if failed:
            raise RuntimeError(failed)
        if not done:
            remove_staged(out)
        return done
    except BaseException as e:
        # the frames of the copy hold the output open: clear them, so that it closes and goes
        traceback.clear_frames(e.__traceback__)
        held, dst = [dst], None
        _close(held)
        disk_full = isinstance(e, RuntimeError) and max_bytes is not None and \
            shutil.disk_usage(Path(out).resolve().parent).free < 2 * part
        remove_staged(out)
        if disk_full:
            raise CopyTooLarge(f"the compressed copy of {path} outgrew the free disk space left for it "
                               f"({str(e) or 'a write failed'})") from None
        if isinstance(e, RuntimeError):  # GDAL's, under gdal.UseExceptions(), or ours from its message
            raise ValueError(f"could not decode {path} into a temporary copy: "
                             f"{str(e) or 'GDAL gave no reason (a damaged file?)'}") from None
        raise
    finally:
        gdal.SetThreadLocalConfigOption("GDAL_NUM_THREADS", previous)


def staged_size(out: str) -> int:
    """Bytes on disk of a copy and its mask file."""
    return sum(os.path.getsize(p) for p in (out, out + ".msk") if os.path.exists(p))


def _by_bands(path: str, dst, indexes: list[int], win: Window, mask: bool,
              progress: Callable[[float], None], is_cancelled: Callable[[], bool],
              written: Callable[[], None], strip: int) -> bool:
    """Band by band, in strips, the input opened anew for each band: for band files (a VRT of
    them, a single-band file) GDAL's cache then holds one band's tiles at most, each decoded
    once, bilinear resampling of a VRT included. A full 10980² Sentinel-2 tile from its JP2
    files staged in 108-111 s at 471 MB of peak memory (``gdal.Translate``: 118 s and 1.8 GB,
    both caches filled up to GDAL_CACHEMAX; 2048 px windows of all bands with the input
    reopened after each row of them: 183 s, a 20 m band's tile row decoded again for the 1 px
    row that bilinear resampling takes across each strip edge)."""
    from osgeo import gdal

    x0, y0, w, h = int(win.col_off), int(win.row_off), int(win.width), int(win.height)
    n, done = len(indexes) + mask, 0
    for k, i in enumerate(indexes):
        src = _open(path)
        a, b = src.GetRasterBand(i), dst.GetRasterBand(k + 1)
        jobs = [(a, b)] + ([(a.GetMaskBand(), b.GetMaskBand())] if mask and k == 0 else [])
        for bi, bo in jobs:
            for r in range(0, h, strip):
                if is_cancelled():
                    return False
                rows = min(strip, h - r)
                _copy(bi, bo, x0, y0 + r, w, rows, 0, r)
                gdal.ErrorReset()
                bo.FlushCache()  # the strip's tiles go to the file, not into the cache
                if gdal.GetLastErrorType() >= gdal.CE_Failure:
                    raise RuntimeError(gdal.GetLastErrorMsg())
                written()
                progress((done + (r + rows) / h) / n)
            done += 1
    return True


def _by_windows(path: str, dst, indexes: list[int], win: Window, mask: bool,
                progress: Callable[[float], None], is_cancelled: Callable[[], bool],
                written: Callable[[], None], output_tiles: bool = False) -> bool:
    """All bands together, window by window along the input's own tiles, the input opened anew
    for each window: for pixel-interleaved files (a multi-band GeoTIFF or JPEG 2000), whose
    tiles hold every band, so a copy band by band would decode each tile once per band.
    ``output_tiles``: windows along the copy's tiles instead (a compressed tile written in two
    parts would be stored twice), the input's tiles on their edges decoded twice."""
    from osgeo import gdal

    x0, y0, w, h = int(win.col_off), int(win.row_off), int(win.width), int(win.height)
    src = _open(path)
    bx, by = src.GetRasterBand(indexes[0]).GetBlockSize()
    # whole tiles, about STRIP_ROWS a side; STRIP_ROWS where a tile is much larger (a file in one
    # tile or strip is then decoded per window, but never held whole)
    if output_tiles:  # cut where the copy's tiles start
        cols = [x0 + c for c in aligned_cuts(0, w, PACKED_WINDOW)]
        rows = [y0 + r for r in aligned_cuts(0, h, PACKED_WINDOW)]
    else:  # cut where the input's tiles start
        sx = bx * max(1, round(STRIP_ROWS / bx)) if bx <= 2 * STRIP_ROWS else STRIP_ROWS
        sy = by * max(1, round(STRIP_ROWS / by)) if by <= 2 * STRIP_ROWS else STRIP_ROWS
        cols, rows = aligned_cuts(x0, x0 + w, sx), aligned_cuts(y0, y0 + h, sy)
    item = gdal.GetDataTypeSize(src.GetRasterBand(indexes[0]).DataType) // 8
    n = len(indexes)
    for ra, rb in zip(rows, rows[1:]):
        for ca, cb in zip(cols, cols[1:]):
            if is_cancelled():
                return False
            src = _open(path)  # the previous window's tiles leave GDAL's cache
            data = src.ReadRaster(ca, ra, cb - ca, rb - ra, band_list=indexes, buf_pixel_space=n * item,
                                  buf_line_space=n * item * (cb - ca), buf_band_space=item)
            if data is None:
                raise RuntimeError(gdal.GetLastErrorMsg())
            err = dst.WriteRaster(ca - x0, ra - y0, cb - ca, rb - ra, data, band_list=list(range(1, n + 1)),
                                  buf_pixel_space=n * item, buf_line_space=n * item * (cb - ca), buf_band_space=item)
            if err:
                raise RuntimeError(gdal.GetLastErrorMsg())
            if mask:
                _copy(src.GetRasterBand(indexes[0]).GetMaskBand(), dst.GetRasterBand(1).GetMaskBand(),
                      ca, ra, cb - ca, rb - ra, ca - x0, ra - y0)
            gdal.ErrorReset()
            dst.FlushCache()
            if gdal.GetLastErrorType() >= gdal.CE_Failure:  # the window's tiles could not be written
                raise RuntimeError(gdal.GetLastErrorMsg())
            written()
            progress(((ra - y0) * w + (cb - x0) * (rb - ra)) / (w * h))
    return True


def _copy(src_band, dst_band, x: int, y: int, w: int, h: int, dx: int, dy: int) -> None:
    """A window of one band (or mask band) into another, at (dx, dy)."""
    from osgeo import gdal

    data = src_band.ReadRaster(x, y, w, h)
    if data is None:
        raise RuntimeError(gdal.GetLastErrorMsg())
    if dst_band.WriteRaster(dx, dy, w, h, data):
        raise RuntimeError(gdal.GetLastErrorMsg())


def _close(held: list) -> str | None:
    """Close the dataset in ``held`` (its only reference, taken out of the list) that was
    written: GDAL's error message where its last tiles could not be written, else None. Closed
    with GDAL's exceptions off, since under ``gdal.UseExceptions()`` that error would be raised
    from the dataset's destructor, where nothing can catch it."""
    ds = held.pop()
    if ds is None:
        return None
    with gdal_exceptions(False) as gdal:
        gdal.PushErrorHandler("CPLQuietErrorHandler")
        try:
            gdal.ErrorReset()
            ds.FlushCache()
            ds = None
            failed = gdal.GetLastErrorType() >= gdal.CE_Failure
            return (gdal.GetLastErrorMsg() or "GDAL could not write it") if failed else None
        finally:
            gdal.PopErrorHandler()


def _open(path: str):
    from osgeo import gdal

    ds = gdal.OpenEx(str(path), gdal.OF_RASTER)
    if ds is None:
        raise RuntimeError(gdal.GetLastErrorMsg() or "GDAL cannot open it")
    return ds


def _create_like(src, indexes: Sequence[int], win: Window, out: str, compress: bool = False):
    """The staged GeoTIFF: ``win`` of ``src``, bands ``indexes`` with their types, no-data and
    descriptions."""
    from osgeo import gdal

    b0 = src.GetRasterBand(indexes[0])
    floating = gdal.GetDataTypeName(b0.DataType).startswith(("Float", "CFloat"))
    codec = COMPRESSED + [f"PREDICTOR={3 if floating else 2}"] if compress else ["COMPRESS=NONE"]
    dst = gdal.GetDriverByName("GTiff").Create(
        str(out), int(win.width), int(win.height), len(indexes), b0.DataType,
        options=["TILED=YES", f"BLOCKXSIZE={TILE}", f"BLOCKYSIZE={TILE}", "INTERLEAVE=BAND",
                 "BIGTIFF=IF_SAFER", *codec])
    if dst is None:
        raise RuntimeError(gdal.GetLastErrorMsg())
    gt = src.GetGeoTransform()
    x, y = int(win.col_off), int(win.row_off)
    dst.SetGeoTransform((gt[0] + x * gt[1] + y * gt[2], gt[1], gt[2], gt[3] + x * gt[4] + y * gt[5], gt[4], gt[5]))
    dst.SetProjection(src.GetProjection())
    for k, i in enumerate(indexes, 1):
        band = src.GetRasterBand(i)
        nd = band.GetNoDataValue()
        if nd is not None:
            dst.GetRasterBand(k).SetNoDataValue(nd)
        dst.GetRasterBand(k).SetDescription(band.GetDescription())
    return dst


def remove_staged(out: str) -> None:
    """Delete a staged file and the side files GDAL may have written beside it."""
    for p in (out, out + ".aux.xml", out + ".msk"):
        try:
            os.remove(p)
        except FileNotFoundError:
            pass
        except OSError as e:  # still open elsewhere (Windows) or read-only: the other files still go
            warnings.warn(f"could not delete the temporary copy {p}: {e}", stacklevel=2)
