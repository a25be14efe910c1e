"""Augmentations for multispectral and SAR patches (no RGB colour jitter).

Geometry (resized crop, flips, 90-degree rotations) is shared by the two modalities of a
view, since the S1 and S2 patches are co-registered; radiometry is per modality and per
band: S2 gets a band-wise gain/offset and pixel noise (in normalised units), S1 a band-wise
offset in dB (a gain in linear power) and multiplicative speckle-like noise.
Every random draw comes from the generator passed in, so a view is a pure function of
(seed, epoch, patch index): resumed and distributed runs see the same views.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class AugmentConfig:
    crop_scale: tuple[float, float] = (0.5, 1.0)
    s2_gain: float = 0.1
    s2_offset: float = 0.1
    s2_noise: float = 0.05
    s1_offset: float = 0.1
    s1_noise: float = 0.1


def _u(gen: torch.Generator, lo: float = 0.0, hi: float = 1.0, shape: tuple[int, ...] = ()) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(shape, generator=gen)


def _resized_crop(x: torch.Tensor, top: int, left: int, h: int, w: int) -> torch.Tensor:
    size = x.shape[-2:]
    crop = x[:, top : top + h, left : left + w]
    return F.interpolate(crop[None], size=size, mode="bilinear", align_corners=False)[0]


def augment_view(
    images: dict[str, torch.Tensor], gen: torch.Generator, cfg: AugmentConfig = AugmentConfig()
) -> dict[str, torch.Tensor]:
    """One augmented view of co-registered normalised images {'s2': [C,H,W], 's1': [C,H,W]}."""
    h, w = next(iter(images.values())).shape[-2:]
    area = float(_u(gen, *cfg.crop_scale))
    aspect = float(torch.exp(_u(gen, -0.3, 0.3)))
    ch = max(8, min(h, round((area * h * w / aspect) ** 0.5)))
    cw = max(8, min(w, round((area * h * w * aspect) ** 0.5)))
    top = int(torch.randint(0, h - ch + 1, (), generator=gen))
    left = int(torch.randint(0, w - cw + 1, (), generator=gen))
    hflip, vflip = bool(_u(gen) < 0.5), bool(_u(gen) < 0.5)
    k = int(torch.randint(0, 4, (), generator=gen))
    out = {}
    for m in ("s2", "s1"):  # fixed order: the draws must not depend on dict order
        if m not in images:
            continue
        x = images[m]
        if images[m].shape[-2:] != (h, w):
            raise ValueError("co-registered modalities must have the same size")
        x = _resized_crop(x, top, left, ch, cw)
        if hflip:
            x = x.flip(-1)
        if vflip:
            x = x.flip(-2)
        x = torch.rot90(x, k, dims=(-2, -1))
        c = x.shape[0]
        if m == "s2":
            gain = _u(gen, 1 - cfg.s2_gain, 1 + cfg.s2_gain, (c, 1, 1))
            offset = cfg.s2_offset * torch.randn((c, 1, 1), generator=gen)
            x = x * gain + offset + cfg.s2_noise * torch.randn(x.shape, generator=gen)
        else:
            offset = cfg.s1_offset * torch.randn((c, 1, 1), generator=gen)
            speckle = 1 + cfg.s1_noise * torch.randn(x.shape, generator=gen)
            x = x * speckle + offset
        out[m] = x
    return out


def view_generator(seed: int, epoch: int, index: int, view: int) -> torch.Generator:
    """Generator for one view of one patch in one epoch (independent of rank and batch)."""
    g = torch.Generator()
    g.manual_seed(((seed * 1_000_003 + epoch) * 1_000_033 + index) * 7 + view)
    return g
