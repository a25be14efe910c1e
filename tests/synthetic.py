"""Synthetic Sentinel-1 + Sentinel-2 scenes for tests whose subject is not the content (signals,
kills, speed): band statistics of the training data, band names set, north-up UTM."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

from core.data.bands import S1_BANDS, S1_MEAN, S1_STD, S2_BANDS, S2_MEAN, S2_STD


def write_s2_s1(folder: Path, size: int, seed: int = 0) -> tuple[str, str]:
    """(s2.tif, s1.tif) of ``size`` x ``size`` px at 10 m in ``folder``: 12 S2 bands (uint16) and VV, VH (dB)."""
    rng = np.random.default_rng(seed)
    s2 = (np.array(S2_MEAN)[:, None, None] + np.array(S2_STD)[:, None, None] * 0.3
          * rng.standard_normal((12, size, size))).clip(1, None).astype("uint16")
    s1 = (np.array(S1_MEAN)[:, None, None] + np.array(S1_STD)[:, None, None] * 0.3
          * rng.standard_normal((2, size, size))).astype("float32")
    paths = []
    for name, a, bands in (("s2.tif", s2, S2_BANDS), ("s1.tif", s1, S1_BANDS)):
        with rasterio.open(folder / name, "w", driver="GTiff", width=size, height=size, count=a.shape[0],
                           dtype=a.dtype, crs="EPSG:32630", transform=from_origin(600000, 4200000, 10, 10),
                           tiled=True) as ds:
            ds.write(a)
            for i, b in enumerate(bands, 1):
                ds.set_band_description(i, b)
        paths.append(str(folder / name))
    return paths[0], paths[1]
