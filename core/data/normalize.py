"""Normalisation with the reBEN training statistics, shared by training and the scene engine."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .bands import S1_MEAN, S1_STD, S2_MEAN, S2_STD

_STATS = {"s2": (S2_MEAN, S2_STD), "s1": (S1_MEAN, S1_STD)}


def normalize(
    x: np.ndarray,
    modality: str,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> np.ndarray:
    """(x - mean) / std per band of a [C,H,W] array; NaN becomes 0 (the band mean)."""
    mean, std = _band_stats(x.shape[0], modality, mean, std)
    out = (x.astype(np.float32) - mean[:, None, None]) / std[:, None, None]
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


def normalize_(x: torch.Tensor, modality: str, invalid: torch.Tensor,
               mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> torch.Tensor:
    """In-place ``normalize`` of a float32 [C,H,W] tensor, with every band set to 0 where
    ``invalid`` [H,W] is True. ``invalid`` must hold every pixel with a non-finite band (then
    no NaN/inf survives and no separate NaN pass is needed). Same result as ``normalize`` on
    an array whose invalid pixels are NaN in all bands, without its copies: the scene
    engine's blocks are large."""
    mean, std = _band_stats(x.shape[0], modality, mean, std)
    x.sub_(torch.from_numpy(mean)[:, None, None]).div_(torch.from_numpy(std)[:, None, None])
    # only over the rows and columns that hold invalid pixels: at a scene edge they are a strip
    # of the block (numpy: its any() on a bool mask is ~15x faster than torch's)
    inv = invalid.numpy()
    rows = np.flatnonzero(inv.any(1))
    if rows.size == 0:
        return x
    cols = np.flatnonzero(inv.any(0))
    r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    x[:, r0:r1, c0:c1].masked_fill_(invalid[r0:r1, c0:c1], 0.0)
    return x


def _band_stats(n_bands: int, modality: str, mean, std) -> tuple[np.ndarray, np.ndarray]:
    m, s = _STATS[modality]
    mean = np.asarray(mean if mean is not None else m, dtype=np.float32)
    std = np.asarray(std if std is not None else s, dtype=np.float32)
    if n_bands != mean.shape[0]:
        raise ValueError(f"{modality}: expected {mean.shape[0]} bands, got {n_bands}")
    return mean, std
