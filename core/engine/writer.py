"""Output rasters of the scene engine: tiled, compressed GeoTIFFs with overviews.

Each output is written to a hidden temporary file next to its destination and moved into
place (``os.replace``) only when the whole run succeeded; ``abort`` deletes it. Encodings:

- probabilities: one band per class (description = class name). ``uint8``: value =
  round(p * 250), so p = value / 250 (band scale 0.004 is set), 255 = no data;
  ``float32``: p in [0, 1], NaN = no data.
- dominant: uint8 index of the most probable class (0-based, in the model's class order,
  colour table from the model card), 255 = no data.
- multihot: bit k (value 2**k) set when class k has p >= its threshold (the model card's
  ``decision_thresholds``, else 0.5); uint8/uint16/uint32 by the
  number of classes; the all-ones value (255 / 65535 / 4294967295) = no data.
- uncertainty: float32 in [0, 1], the mean binary entropy (bits) of the per-class
  probabilities: 0 = every class certain, 1 = every class at p = 0.5; NaN = no data.
- embeddings: float32, one band per dimension (L2-normalised per modality, S2 then S1), NaN = no data.
- clusters: uint8 K-means cluster index with a colour table, 255 = no data.

Categorical outputs (dominant, multihot, clusters) carry a ``values`` tag listing the values
present (no data left out) when there are at most ``MAX_LISTED_VALUES``: a GIS builds the
legend from it instead of a histogram over the whole value range (2**19 bins for a 19-class
multi-hot raster, 2**31 for 31 classes). Probability outputs carry a ``class_means`` tag: each
class's mean probability over the cells with data, so a GIS can show the class that matters
most without reading every pixel (overview statistics can pick a neighbour of close means).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.windows import Window

from ..io.temporaries import beside_tag
from .palette import hex_rgb

PROB_SCALE = 250.0
# deflate level 1: 10 m outputs of a 4096² scene (5 probability bands) compress with their overviews in
# 1.4 s instead of 9.0 s at GDAL's default level 6, for 8 % more bytes (benchmarks/fine_outputs.py)
DEFLATE_LEVEL = 1
MAX_LISTED_VALUES = 256
MEAN_KINDS = ("probabilities", "fine_probabilities")  # outputs that carry the class_means tag


def multihot_dtype(n_classes: int) -> tuple[str, int]:
    if n_classes <= 7:
        return "uint8", 255
    if n_classes <= 15:
        return "uint16", 65535
    if n_classes <= 31:
        return "uint32", 4294967295
    raise ValueError(f"a multi-hot raster holds at most 31 classes, the model has {n_classes}")


class OutputRaster:
    """One output GeoTIFF written block by block into a temporary file."""

    def __init__(self, path: str, kind: str, crs, transform, width: int, height: int, count: int,
                 dtype: str, nodata, descriptions: Sequence[str] | None = None,
                 colors: Sequence[str] | None = None, categorical: bool = False,
                 scale: float | None = None, tags: dict[str, str] | None = None) -> None:
        self.path = Path(path)
        self.kind = kind
        if not self.path.parent.is_dir():
            raise FileNotFoundError(f"output folder {self.path.parent} does not exist")
        self.tmp = Path(beside_tag(self.path) + ".tmp.tif")  # found and deleted by the next run if this one dies
        self.categorical = categorical
        self.present: set[int] | None = set() if categorical else None  # None: not listed (too many)
        # per band: (sum of the values with data, their count), for the class_means tag
        self.sums = (np.zeros(count), np.zeros(count)) if kind in MEAN_KINDS else None
        self.scale = scale or 1.0
        block = 256 if min(width, height) >= 256 else 16 * max(1, min(width, height) // 16)
        tiled = min(width, height) >= 16
        profile = dict(driver="GTiff", width=width, height=height, count=count, dtype=dtype, crs=crs,
                       transform=transform, nodata=nodata, compress="deflate", zlevel=DEFLATE_LEVEL, BIGTIFF="IF_SAFER",
                       interleave="band" if count > 1 else "pixel")
        if tiled:
            profile.update(tiled=True, blockxsize=block, blockysize=block)
        if dtype != "float32":
            profile["predictor"] = 2
        else:
            profile["predictor"] = 3
        self.ds = rasterio.open(self.tmp, "w+", **profile)
        if descriptions:
            for i, d in enumerate(descriptions, 1):
                self.ds.set_band_description(i, d[:250])
        if colors:
            table = {i: hex_rgb(c) for i, c in enumerate(colors)}
            table[int(nodata)] = (0, 0, 0, 0)
            self.ds.write_colormap(1, table)
        if scale is not None:
            self.ds.scales = (scale,) * count
        self.ds.update_tags(mosaic_output=kind, **(tags or {}))

    def write(self, arr: np.ndarray, row0: int, col0: int) -> None:
        """``arr`` [C, rows, cols] at output cell (row0, col0)."""
        self.ds.write(arr, window=Window(col0, row0, arr.shape[2], arr.shape[1]))
        if self.present is not None:
            v = np.unique(arr)
            self.present.update(int(x) for x in v[v != self.ds.nodata])
            if len(self.present) > MAX_LISTED_VALUES:
                self.present = None
        if self.sums is not None:
            flat = arr.reshape(arr.shape[0], -1).astype("float64")
            ok = ~np.isnan(flat) if self.ds.nodata is None or np.isnan(self.ds.nodata) else flat != self.ds.nodata
            self.sums[0][:] += np.where(ok, flat, 0.0).sum(1)
            self.sums[1][:] += ok.sum(1)

    def read(self, row0: int, col0: int, rows: int, cols: int) -> np.ndarray:
        return self.ds.read(window=Window(col0, row0, cols, rows))

    def finish(self) -> None:
        """Overviews, the ``values`` tag, close; the file stays at its temporary path until ``commit``."""
        if self.present is not None:
            self.ds.update_tags(values=",".join(str(v) for v in sorted(self.present)))
        if self.sums is not None and self.sums[1].all():
            means = self.sums[0] / self.sums[1] * self.scale
            self.ds.update_tags(class_means=",".join(f"{m:.5f}" for m in means))
        w, h = self.ds.width, self.ds.height
        factors = []
        f = 2
        while max(w, h) / f >= 128:
            factors.append(f)
            f *= 2
        if factors:
            self.ds.build_overviews(factors, Resampling.nearest if self.categorical else Resampling.average)
            self.ds.update_tags(ns="rio_overview", resampling="nearest" if self.categorical else "average")
        self.ds.close()

    def commit(self) -> str:
        os.replace(self.tmp, self.path)
        # sidecars of an earlier file at this path describe other pixels (QGIS would show its
        # cached statistics and histogram for the new raster)
        Path(str(self.path) + ".aux.xml").unlink(missing_ok=True)
        return str(self.path)

    def abort(self) -> None:
        try:
            if not self.ds.closed:
                self.ds.close()
        finally:
            self.tmp.unlink(missing_ok=True)
            Path(str(self.tmp) + ".aux.xml").unlink(missing_ok=True)
            Path(str(self.tmp) + ".ovr").unlink(missing_ok=True)
