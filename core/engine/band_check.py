"""Do an input's values look like the bands they are read as?

A band list typed wrong or a stack in an unexpected order gives no error: the model reads
what it is given. These checks sample the input and test relations between bands that hold
over nearly every pixel of real Sentinel data, whatever the land cover (the fractions below
were measured on the Spain, Germany, USA, Central Africa, South-East Asia and India scenes of
../shared/data, L1C and L2A: docs/engine/band_check.md). A check that fails says which bands
look wrong; it warns and never stops a run (an odd scene may be right).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import rasterio

from .align import Samples

MIN_PIXELS = 100
# (band a, band b, test on a and b, lowest fraction of pixels it may hold on; on real scenes)
RULES: tuple[tuple[str, str, str, float, str], ...] = (
    ("B11", "B12", "above", 0.5, "99-100 %"),
    ("B8A", "B08", "near", 0.5, "92-100 %"),
    ("B07", "B08", "near", 0.5, "91-100 %"),
    ("B08", "B04", "above", 0.2, "47-100 %; less over water, snow or cloud shadow"),
    ("VV", "VH", "above", 0.3, "99 % on scenes, 31-100 % on 120 px patches"),
)
NEAR = (0.75, 1.33)   # a / b within this ratio: neighbouring bands of the same spectrum
MEDIAN_RATIO = (0.03, 10.0)  # a band's median / its training mean; real scenes: 0.08 .. 5.8


def band_value_warnings(values: dict[str, np.ndarray], means: dict[str, float] | None, what: str,
                        named_from: str) -> list[str]:
    """Warnings for ``values`` (model band -> sampled values, optical as digital numbers less
    the offset, SAR in dB or linear), ``means`` the model's training means per band (or None)."""
    n = min((v.size for v in values.values()), default=0)
    if n < MIN_PIXELS:
        return []
    odd = []
    for a, b, test, lowest, real in RULES:
        if a not in values or b not in values:
            continue
        va, vb = values[a], values[b]
        if test == "above":
            held = float(np.mean(va > vb))
            text = f"{a} above {b}"
        else:
            ratio = va / np.where(vb == 0, np.nan, vb)
            held = float(np.mean((ratio > NEAR[0]) & (ratio < NEAR[1])))
            text = f"{a} within {NEAR[0]:g}-{NEAR[1]:g} x {b}"
        if held < lowest:
            odd.append(f"{text} on {held:.0%} of the sampled pixels (real scenes: {real})")
    if means:
        medians = {b: float(np.median(v)) for b, v in values.items() if means.get(b)}
        far = {b: m / means[b] for b, m in medians.items() if not MEDIAN_RATIO[0] <= m / means[b] <= MEDIAN_RATIO[1]}
        if far and len(far) == len(medians) and all(r < MEDIAN_RATIO[0] for r in far.values()):
            odd.append(f"every band's median is under {MEDIAN_RATIO[0]:.0%} of the training data's mean: the values "
                       f"look like reflectance from 0 to 1, where the model reads reflectance x 10000")
        elif far:
            odd.append("median of " + ", ".join(f"{b} {medians[b]:.4g} (training mean {means[b]:.4g})" for b in far)
                       + ": far from that band")
    if not odd:
        return []
    return [f"the {what} values do not look like the bands they are read as ({named_from}): " + "; ".join(odd)
            + ". Check the band order (the band list) before trusting the map"]


def check_band_values(src: rasterio.io.DatasetReader, indexes: Sequence[int], bands: Sequence[str],
                      offset: float, means: Sequence[float] | None, what: str, named_from: str,
                      samples: Samples | None = None) -> list[str]:
    """``band_value_warnings`` for the file bands ``indexes`` read as the model bands ``bands``
    (``offset``: digital numbers subtracted first); nothing for a file that cannot be sampled
    (the run's own reads then say what is wrong). ``samples``: the run's shared sample."""
    try:
        sample = (samples or Samples(windows=4)).of(src, list(indexes))
    except (rasterio.errors.RasterioError, rasterio.errors.RasterioIOError):
        return []
    values = {b: sample[k] - offset for k, b in enumerate(bands)}
    return band_value_warnings(values, dict(zip(bands, means)) if means is not None else None, what, named_from)
