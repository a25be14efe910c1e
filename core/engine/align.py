"""Inputs of the scene engine: units, processing level and the reference grid (which file
band is which model band is ``band_mapping.py``'s job).

- Units: SAR in linear power is converted to dB (``auto`` decides from the values: dB
  backscatter is mostly negative, linear power never is). The optical processing level
  (L1C / L2A) is read from the file name and metadata and compared with the model's.
- Reference grid: the optical raster's grid when it is metric, north-up and at the model's
  pixel size; else a north-up grid at the model's pixel size in the optical CRS (metric) or
  in the local UTM zone. Only the overlap of both inputs (and of a user extent) is kept.

Reading the bands on that grid is the job of ``band_reader.py``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.transform import Affine
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from ..io.gdal_messages import gdal_exceptions
from .band_mapping import canonical_band
from .open_raster import mask_plan, open_for_blocks

def detect_level(path: str, tags: dict[str, str], file_bands: Sequence[str]) -> str | None:
    """'L1C', 'L2A' or None (unknown), from the name, metadata, and B10 (only L1C has it)."""
    text = " ".join([Path(path).name] + [f"{k}={v}" for k, v in tags.items()]).upper()
    if "L2A" in text or "MSIL2A" in text or "BOA" in text:
        return "L2A"
    if "L1C" in text or "MSIL1C" in text or "TOA" in text:
        return "L1C"
    if "B10" in file_bands:
        return "L1C"
    return None


class Samples:
    """Pixels sampled from input files, read once per file and shared by every check of a run
    (the SAR units, the reflectance offset, the band-value checks each read their own before:
    three reads of the same windows, a fifth of a small scene's start-up)."""

    def __init__(self, windows: int = 5) -> None:
        self.windows = windows
        self._read: dict[str, tuple[list[int], np.ndarray]] = {}  # file -> (bands, [bands, N] NaN where no data)

    def of(self, src: rasterio.io.DatasetReader, indexes: Sequence[int]) -> np.ndarray:
        """[bands, N] values of the bands ``indexes`` at N sampled pixels (those with data in every band)."""
        bands, values = self._read.get(src.name, ([], np.empty((0, 0))))
        if not set(indexes) <= set(bands):
            bands = sorted(set(bands) | set(indexes))
            values = _sample(src, bands, self.windows)
            self._read[src.name] = (bands, values)
        v = values[[bands.index(i) for i in indexes]]
        return v[:, np.isfinite(v).all(0)]


def _sample(src: rasterio.io.DatasetReader, indexes: Sequence[int], windows: int) -> np.ndarray:
    """[bands, N] float64 values of the bands ``indexes``, NaN where a band has no data.

    Read through its own handle of the file (closed after, so the tiles it decodes leave
    GDAL's block cache): a <= 512 px overview where the file has overviews, else ``windows`` x
    ``windows`` windows of 64 px spread over it (a file of at most that many pixels: read whole,
    once). A decimated read of a file without overviews would decode every tile of it (2 GB for a
    full Sentinel-1 scene). A no-data value is found in the values read (a masked read asks GDAL
    for each band's mask: 10x the time of the values on an uncompressed file)."""
    with open_for_blocks(src.name) as ds:
        kind, nodata = mask_plan(ds, indexes)
        masked = kind in ("dataset", "bands")
        if ds.overviews(indexes[0]):
            scale = max(1, max(ds.width, ds.height) // 512)
            shape = (len(indexes), max(1, ds.height // scale), max(1, ds.width // scale))
            parts = [ds.read(indexes, out_shape=shape, masked=masked)]
        elif ds.width * ds.height <= (64 * windows) ** 2:
            parts = [ds.read(indexes, masked=masked)]
        else:
            h, w = min(64, ds.height), min(64, ds.width)
            rows = np.unique(np.linspace(0, ds.height - h, windows).round().astype(int))
            cols = np.unique(np.linspace(0, ds.width - w, windows).round().astype(int))
            parts = [ds.read(indexes, window=Window(int(c), int(r), w, h), masked=masked) for r in rows for c in cols]
    if masked:
        return np.concatenate([p.astype("float64").filled(np.nan).reshape(len(indexes), -1) for p in parts], axis=1)
    raw = np.concatenate([p.reshape(len(indexes), -1) for p in parts], axis=1)
    v = raw.astype("float64")
    for band, nd in nodata or []:  # as stored: a fractional no-data value never occurs in integers
        if raw.dtype.kind == "f" or float(nd).is_integer():
            bad = raw == (nd if raw.dtype.kind == "f" else int(nd))
            if band is None:
                v[bad] = np.nan
            else:
                v[band][bad[band]] = np.nan
    return v


def sample_values(src: rasterio.io.DatasetReader, indexes: Sequence[int], windows: int = 8) -> np.ndarray:
    """[bands, N] values of the bands ``indexes`` at N sampled pixels (those with data in every
    band), read now (``Samples`` shares one read between checks)."""
    return Samples(windows).of(src, indexes)


def sar_is_linear(src: rasterio.io.DatasetReader, indexes: Sequence[int], samples: Samples | None = None) -> bool:
    """True when the SAR values look like linear power (non-negative, median < 1), in a sample."""
    v = (samples or Samples()).of(src, indexes).ravel()
    if v.size == 0:
        return False
    return bool((v >= 0).mean() > 0.99 and np.median(v) < 1.0)


def is_metric(crs: CRS | None) -> bool:
    if crs is None or not crs.is_projected:
        return False
    try:
        return abs(crs.linear_units_factor[1] - 1.0) < 1e-9
    except Exception:  # noqa: BLE001 - CRS without units
        return False


def utm_crs_for(bounds: tuple[float, float, float, float], crs: CRS) -> CRS:
    """The metric CRS for a scene at ``bounds`` in ``crs``: the UTM zone (WGS 84) of its centre,
    or Universal Polar Stereographic where UTM is not defined (north of 84 N, south of 80 S)."""
    w, s, e, n = transform_bounds(crs, "EPSG:4326", *bounds)
    lon, lat = (w + e) / 2, (s + n) / 2
    if lat > 84:
        return CRS.from_epsg(32661)  # UPS North (WGS 84)
    if lat < -80:
        return CRS.from_epsg(32761)  # UPS South
    zone = min(60, max(1, int((lon + 180) // 6) + 1))
    return CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)


def wrapped_source_crs(src) -> CRS | None:
    """For a raster in geographic coordinates that reaches past 180 E or 180 W (a scene across the
    antimeridian, e.g. 179.98 to 180.30 E): its CRS with longitudes wrapped around the scene's
    centre (PROJ's +lon_wrap). Without it the warper turns 180.1 E into -179.9, a longitude the
    raster does not hold, and every column east of 180 comes out empty. None elsewhere."""
    if src.crs is None or not src.crs.is_geographic:
        return None
    left, _, right, _ = src.bounds
    if left >= -180 and right <= 180:
        return None
    return CRS.from_proj4(f"{src.crs.to_proj4()} +lon_wrap={(left + right) / 2:.6f}")


@dataclass
class Grid:
    """A north-up reference grid."""

    crs: CRS
    transform: Affine
    width: int
    height: int

    @property
    def res(self) -> float:
        return self.transform.a

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        t = self.transform
        return (t.c, t.f + t.e * self.height, t.c + t.a * self.width, t.f)


def _footprint(src, crs: CRS) -> tuple[float, float, float, float]:
    """Bounds of a raster in ``crs`` (densified), whatever its transform (rotated ok)."""
    h, w = src.height, src.width
    xs, ys = [], []
    for r, c in [(r, c) for r in np.linspace(0, h, 21) for c in (0, w)] + \
                [(r, c) for c in np.linspace(0, w, 21) for r in (0, h)]:
        x, y = src.transform * (c, r)
        xs.append(x)
        ys.append(y)
    from rasterio.warp import transform as tr

    if src.crs != crs:
        xs, ys = tr(src.crs, crs, xs, ys)
    return min(xs), min(ys), max(xs), max(ys)


def reference_grid(primary, others: Sequence, pixel_size: float,
                   extent: tuple[float, float, float, float] | None = None,
                   extent_crs: str | None = None) -> tuple[Grid, bool]:
    """The reference grid for ``primary`` (an open dataset) cut to the overlap with ``others``.

    Returns (grid, native): native = the grid is primary's own pixel grid (read directly).
    """
    t = primary.transform
    north_up = abs(t.b) < 1e-12 and abs(t.d) < 1e-12 and t.a > 0 and t.e < 0
    if primary.crs is None:
        raise ValueError(f"{primary.name} has no coordinate reference system: assign one (e.g. with "
                         f"gdal_edit.py -a_srs) before running the engine")
    if is_metric(primary.crs):
        crs = primary.crs
        native = north_up and abs(t.a - pixel_size) < 0.01 * pixel_size and abs(-t.e - pixel_size) < 0.01 * pixel_size
    else:
        crs = utm_crs_for(primary.bounds, primary.crs)
        native = False
    b = _footprint(primary, crs)
    for o in others:
        if o.crs is None:
            raise ValueError(f"{o.name} has no coordinate reference system: assign one before running")
        ob = _footprint(o, crs)
        b = (max(b[0], ob[0]), max(b[1], ob[1]), min(b[2], ob[2]), min(b[3], ob[3]))
        if b[0] >= b[2] or b[1] >= b[3]:
            raise ValueError(f"the inputs do not overlap: {primary.name} and {o.name} cover different places "
                             f"(check that both are of the same scene and have the right CRS)")
    if extent is not None:
        ecrs = CRS.from_user_input(extent_crs) if extent_crs else crs
        xmin, ymin, xmax, ymax = extent
        if xmin >= xmax or ymin >= ymax:
            raise ValueError(f"extent {extent} is empty: give xmin, ymin, xmax, ymax")
        eb = transform_bounds(ecrs, crs, xmin, ymin, xmax, ymax, densify_pts=21) if ecrs != crs else extent
        b = (max(b[0], eb[0]), max(b[1], eb[1]), min(b[2], eb[2]), min(b[3], eb[3]))
        if b[0] >= b[2] or b[1] >= b[3]:
            raise ValueError(f"the extent {extent} ({extent_crs or crs.to_string()}) does not overlap the input(s)")
    if native:
        # snap the overlap outward to primary's pixel grid
        inv = ~t
        c0, r0 = inv * (b[0], b[3])
        c1, r1 = inv * (b[2], b[1])
        c0, r0 = max(0, math.floor(c0 + 1e-6)), max(0, math.floor(r0 + 1e-6))
        c1, r1 = min(primary.width, math.ceil(c1 - 1e-6)), min(primary.height, math.ceil(r1 - 1e-6))
        transform = t * Affine.translation(c0, r0)
        w, h = max(1, c1 - c0), max(1, r1 - r0)
        # the grid is still primary's pixel grid, shifted by whole pixels
        return Grid(crs, transform, w, h), True
    x0 = math.floor(b[0] / pixel_size) * pixel_size
    y1 = math.ceil(b[3] / pixel_size) * pixel_size
    w = max(1, math.ceil((b[2] - x0) / pixel_size - 1e-6))
    h = max(1, math.ceil((y1 - b[1]) / pixel_size - 1e-6))
    return Grid(crs, Affine(pixel_size, 0, x0, 0, -pixel_size, y1), w, h), False


def build_band_vrt(paths: Sequence[str], out: str, resampling: str = "bilinear") -> str:
    """Stack single-band files (e.g. Sentinel-2 JP2 bands at 10/20/60 m) into one VRT at the
    finest resolution, with band descriptions taken from the file names (s2_B8A.jp2 -> B8A)."""
    with gdal_exceptions() as gdal:  # errors raised; QGIS's own setting kept
        vrt = gdal.BuildVRT(str(out), [str(p) for p in paths], separate=True, resolution="highest",
                            resampleAlg=resampling)
        if vrt is None:
            raise ValueError(f"could not stack {list(paths)} into a VRT")
        for i, p in enumerate(paths, 1):
            name = canonical_band(Path(p).stem)
            if name:
                vrt.GetRasterBand(i).SetDescription(name)
            ds = gdal.Open(str(p))  # keep the dataset alive while its band is used
            nd = ds.GetRasterBand(1).GetNoDataValue()
            ds = None
            if nd is not None:
                vrt.GetRasterBand(i).SetNoDataValue(nd)
        vrt.FlushCache()
        vrt = None
    return str(out)
