"""Band names, class names and normalisation statistics shared by every part of core.

Names are tuples and indices are derived from them, so there is one source of truth
for band order (TorchGeo habit).
"""
from __future__ import annotations

from typing import Sequence

S2_BANDS: tuple[str, ...] = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12",
)
S1_BANDS: tuple[str, ...] = ("VV", "VH")
# Whole 13-band Sentinel-2 stacks (B10 included), e.g. Sen1Floods11 S2Hand files
S2_13_BANDS: tuple[str, ...] = S2_BANDS[:10] + ("B10",) + S2_BANDS[10:]

# Mean / std of the full reBEN (BigEarthNet v2.0) training split, per band.
# S2 in reflectance x 10000 (Sen2Cor L2A), S1 in dB. Source: shared/data/README.md.
S2_MEAN: tuple[float, ...] = (361.1, 438.4, 614.1, 588.4, 942.8, 1769.9, 2049.6, 2193.3, 2235.6, 2241.5, 1568.2, 997.7)
S2_STD: tuple[float, ...] = (575.1, 607.0, 603.3, 684.6, 738.4, 1100.5, 1275.8, 1369.4, 1356.5, 1316.4, 1070.2, 813.5)
S1_MEAN: tuple[float, ...] = (-12.64, -19.35)
S1_STD: tuple[float, ...] = (5.13, 5.59)

# BigEarthNet 19-class nomenclature (CORINE 2018 based), canonical order.
BEN19_CLASSES: tuple[str, ...] = (
    "Urban fabric",
    "Industrial or commercial units",
    "Arable land",
    "Permanent crops",
    "Pastures",
    "Complex cultivation patterns",
    "Land principally occupied by agriculture, with significant areas of natural vegetation",
    "Agro-forestry areas",
    "Broad-leaved forest",
    "Coniferous forest",
    "Mixed forest",
    "Natural grassland and sparsely vegetated areas",
    "Moors, heathland and sclerophyllous vegetation",
    "Transitional woodland, shrub",
    "Beaches, dunes, sands",
    "Inland wetlands",
    "Coastal wetlands",
    "Inland waters",
    "Marine waters",
)
# CORINE-inspired colours, one per class (hex), used for palettes in every output.
BEN19_COLORS: tuple[str, ...] = (
    "#e6004d", "#cc4df2", "#ffffa8", "#e68000", "#e6e64d", "#ffe64d", "#e6cc4d", "#f2cca6",
    "#80ff00", "#00a600", "#4dff00", "#ccf24d", "#a6ff80", "#a6f200", "#e6e6e6", "#a6a6ff",
    "#ccccff", "#00ccf2", "#0066cc",
)


# colours of classes an analyst adds (few-shot): dark tones, far from the light, saturated
# CORINE colours above, so a new class never looks like a known one (the dock and the model
# card use the same list)
NEW_CLASS_COLORS: tuple[str, ...] = (
    "#542788", "#8c2d04", "#01665e", "#404040", "#1a1a80", "#6b4e00", "#7a0177", "#00441b",
)


def band_indices(wanted: Sequence[str], available: Sequence[str]) -> list[int]:
    """Positions of ``wanted`` bands in ``available``; a missing band is named in the error."""
    missing = [b for b in wanted if b not in available]
    if missing:
        raise ValueError(
            f"missing band(s) {', '.join(missing)}; available: {', '.join(available)}"
        )
    return [list(available).index(b) for b in wanted]


def multi_hot(labels: Sequence[str], classes: Sequence[str] = BEN19_CLASSES) -> list[float]:
    """Multi-hot vector of ``labels`` over ``classes``; an unknown label is an error."""
    index = {c: i for i, c in enumerate(classes)}
    unknown = [lab for lab in labels if lab not in index]
    if unknown:
        raise ValueError(f"unknown class name(s): {unknown}")
    vec = [0.0] * len(classes)
    for lab in labels:
        vec[index[lab]] = 1.0
    return vec
