"""The Sentinel-2 reflectance offset of processing baseline 04.00 (January 2022) and later.

Products from baseline 04.00 on store reflectance as (DN - 1000) / 10000 (L2A: BOA_ADD_OFFSET,
L1C: RADIO_ADD_OFFSET = -1000); older products, and BigEarthNet on which the bundled model was
trained, as DN / 10000. Read a new product as an old one and every band is 1000 DN too bright:
a different map, without a word. The offset is taken, in this order, from the user
(``optical_offset``), from the product's metadata (an ``*_ADD_OFFSET`` tag, as GDAL's SENTINEL2
driver and some converters write), or from the processing baseline in a product name in the
input's path (``..._MSIL2A_20220706T085611_N0400_...``: N0400 and later carry the offset).
Where nothing tells (a plain GeoTIFF, or the N9999 that BigEarthNet and Major TOM write for a
harmonised product), no offset is applied and the run says so.

The engine applies an offset by adding it to the optical band means of the normalisation: the
same numbers as subtracting it from every pixel, at no cost.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

BASELINE_OFFSET = 1000.0  # DN, from baseline 04.00 on
_PRODUCT = re.compile(r"MSIL(?:1C|2A)_\d{8}T\d{6}_N(\d{4})", re.IGNORECASE)


def detect_offset(files: Sequence[str], tags: dict[str, Any]) -> tuple[float | None, str]:
    """(offset in DN to subtract, or None when nothing tells; where it comes from)."""
    for k, v in tags.items():
        if "_ADD_OFFSET" in k.upper():  # BOA_ADD_OFFSET, RADIO_ADD_OFFSET, per band: BOA_ADD_OFFSET_B2
            try:
                return -float(v), f"the input's metadata ({k}={v})"
            except (TypeError, ValueError):
                pass
    for f in files:
        for m in _PRODUCT.finditer(str(Path(f))):
            n = int(m.group(1))
            if n == 9999:
                continue  # a harmonised product: the baseline is not told
            return (BASELINE_OFFSET if n >= 400 else 0.0), f"processing baseline {n // 100:02d}.{n % 100:02d} " \
                                                             f"in the product name ({m.group(0)})"
    return None, ""


def resolve_offset(given: float | None, files: Sequence[str], tags: dict[str, Any],
                   darkest: Callable[[], np.ndarray] | None = None) -> tuple[float, str | None]:
    """The offset to apply and what to tell the user about it (None: nothing worth saying).

    ``darkest``: when nothing tells, a sample [bands, N] of the visible and near-infrared bands;
    without the offset, water and shadow put the darkest 1 % of pixels (their darkest band)
    near 200-500 DN (measured: 180-480 on this project's L1C and L2A scenes), with it above
    1000 (1860 on a baseline 04.00 product): the run then warns."""
    if given is not None:
        return float(given), (f"optical values read as reflectance = (DN - {given:g}) / 10000 (offset as given)"
                              if given else None)
    offset, source = detect_offset(files, tags)
    if offset:
        return offset, f"optical values read as reflectance = (DN - {offset:g}) / 10000, from {source}"
    if offset is None and darkest is not None:
        v = darkest()
        if v.size and np.percentile(v.min(0), 1) >= BASELINE_OFFSET:
            return 0.0, ("the optical input does not say its Sentinel-2 processing baseline, and its darkest pixels "
                         f"are all above {BASELINE_OFFSET:g} DN, as in products of baseline 04.00 or later (January "
                         f"2022 on), which add {BASELINE_OFFSET:g}: if it is one, give --optical-offset "
                         f"{BASELINE_OFFSET:g} (read now as reflectance = DN / 10000)")
    return 0.0, None


def shifted_mean(mean: Sequence[float] | None, n_bands: int, offset: float) -> Any:
    """Band means that also subtract ``offset`` when normalising (None stays the default statistics)."""
    if not offset:
        return mean
    from ..data.normalize import _band_stats

    base, _ = _band_stats(n_bands, "s2", mean, None)
    return (np.asarray(base, dtype=np.float64) + offset).tolist()
