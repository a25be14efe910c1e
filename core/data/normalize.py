"""Normalisation with the reBEN training statistics, shared by training and the scene engine."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .bands import S1_MEAN, S1_STD, S2_MEAN, S2_STD

_STATS = {"s2": (S2_MEAN, S2_STD), "s1": (S1_MEAN, S1_STD)}


def normalize(
    x: np.ndarray,
    modality: str,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> np.ndarray:
    """(x - mean) / std per band of a [C,H,W] array; NaN becomes 0 (the band mean)."""
    m, s = _STATS[modality]
    mean = np.asarray(mean if mean is not None else m, dtype=np.float32)[:, None, None]
    std = np.asarray(std if std is not None else s, dtype=np.float32)[:, None, None]
    if x.shape[0] != mean.shape[0]:
        raise ValueError(f"{modality}: expected {mean.shape[0]} bands, got {x.shape[0]}")
    out = (x.astype(np.float32) - mean) / std
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
