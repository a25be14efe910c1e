"""A per-pixel classifier on the encoders' multi-scale feature maps (a hypercolumn head).

The window head answers for a 1.2 km training window; the analyst's map needs an answer per
10 m pixel. Each pixel's hypercolumn, per modality, is its normalised bands (10 m) and the four
stage outputs of the encoder (20/40/80/160 m for the small model) sampled at the pixel by
linear interpolation: texture and context from the stages, the exact spectrum from the bands.
A linear map per modality takes it to ``hidden`` units; the modalities present at the pixel
are averaged (so optical alone, SAR alone or both work, as in the window head); then ReLU and
a linear map to the classes, softmax over them (one class per pixel).

Linear interpolation and a linear map commute, so the scene engine applies each level's part
of the map at the level's own resolution and interpolates the sums coarse to fine
(``logits_from_maps``): the cost is one small map per level plus ``hidden`` channels at 10 m,
not a 250-channel hypercolumn per pixel. ``hypercolumns`` samples the same values at given
pixels for training; the two agree (tests/core/test_pixel_head.py).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class PixelHead(nn.Module):
    """Hypercolumn -> classes, per pixel.

    Args:
        level_dims: per modality, the channels of its hypercolumn parts in order: bands, then
            the encoder's stage outputs (``ResNetEncoder.level_channels``).
        strides: the stage outputs' strides in pixels (``ResNetEncoder.level_strides``), each
            twice the one before.
        hidden: hidden units.
        n_classes: classes of the pixel map.
    """

    def __init__(self, level_dims: dict[str, Sequence[int]], strides: Sequence[int], hidden: int,
                 n_classes: int) -> None:
        super().__init__()
        self.level_dims = {m: tuple(int(c) for c in d) for m, d in level_dims.items()}
        self.strides = tuple(int(s) for s in strides)
        if any(b != 2 * a for a, b in zip(self.strides, self.strides[1:])):
            raise ValueError(f"stage strides must double from one stage to the next, got {self.strides}")
        self.proj = nn.ModuleDict({m: nn.Linear(sum(d), hidden) for m, d in self.level_dims.items()})
        self.out = nn.Linear(hidden, n_classes)
        self.hidden, self.n_classes = hidden, n_classes

    def hidden_units(self, feats: dict[str, torch.Tensor], present: dict[str, torch.Tensor] | None = None
                     ) -> torch.Tensor:
        """feats[m]: [N, sum(level_dims[m])] hypercolumns; present[m]: [N] 0/1 -> [N, hidden] (pre-ReLU)."""
        num, den = 0.0, 0.0
        for m, f in feats.items():
            p = torch.ones(f.shape[0], 1, device=f.device) if present is None else present[m][:, None].to(f.dtype)
            num = num + self.proj[m](f) * p
            den = den + p
        if isinstance(den, float):
            raise ValueError("no modality given to the pixel head")
        return num / den.clamp_min(1.0)

    def forward(self, feats: dict[str, torch.Tensor], present: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Logits [N, n_classes] of N hypercolumns."""
        return self.out(F.relu(self.hidden_units(feats, present)))

    def level_weights(self, m: str) -> list[torch.Tensor]:
        """The projection of modality ``m`` cut per level: [hidden, channels] each, bands first."""
        w = self.proj[m].weight
        out, a = [], 0
        for c in self.level_dims[m]:
            out.append(w[:, a: a + c])
            a += c
        return out

    @torch.inference_mode()
    def logits_from_maps(self, bands: dict[str, torch.Tensor], levels: dict[str, Sequence[torch.Tensor]],
                         present: dict[str, torch.Tensor], rows: tuple[int, int], cols: tuple[int, int]
                         ) -> torch.Tensor:
        """Logits [K, r1 - r0, c1 - c0] of the pixels rows x cols of a read window.

        Args:
            bands: per modality, the normalised bands of those pixels, [C, r1 - r0, c1 - c0].
            levels: per modality, the encoder's stage outputs over the whole read window,
                [C_L, H/s, W/s] at ``strides`` (cell j centred on pixel s * j of the window).
            present: per modality, [r1 - r0, c1 - c0] bool: the modality is valid at the pixel.
            rows, cols: [start, end) of the pixels in the read window.

        The work at 10 m is what bounds the cost (``hidden`` channels per pixel): where every
        modality is present over the whole strip, their stage parts are summed at the finest stage's
        resolution and interpolated once, and each operation at 10 m runs in place.
        """
        if not levels:
            raise ValueError("no modality given to the pixel head")
        mods = list(levels)
        everywhere = len(mods) == 1 or all(bool(present[m].all()) for m in mods)
        if everywhere:  # the mean over modalities of (bands part + stage part), as one sum
            coarse, box = None, None
            for m in mods:
                c, box = _coarse_to_finest(levels[m], self.level_weights(m)[1:], self.strides, rows, cols)
                coarse = c if coarse is None else coarse.add_(c)
            h = _to_pixels(coarse, box, self.strides[0], rows, cols)
            # every modality's bands in one 1x1 convolution: one pass over the hidden units, not one each
            w = torch.cat([self.level_weights(m)[0] for m in mods], dim=1)
            x = torch.cat([bands[m].to(w.dtype) for m in mods]) if len(mods) > 1 else bands[mods[0]]
            h.add_(_project(x, w, sum(self.proj[m].bias for m in mods)))
            if len(mods) > 1:
                h.mul_(1.0 / len(mods))
        else:  # presence differs from pixel to pixel: each modality's units, averaged where present
            num = den = None
            for m in mods:
                c, box = _coarse_to_finest(levels[m], self.level_weights(m)[1:], self.strides, rows, cols)
                hm = _to_pixels(c, box, self.strides[0], rows, cols)
                hm.add_(_project(bands[m], self.level_weights(m)[0], self.proj[m].bias))
                p = present[m].to(hm.dtype)[None]
                num = hm.mul_(p) if num is None else num.add_(hm.mul_(p))
                den = p if den is None else den + p
            h = num.div_(den.clamp_min(1.0))
        return _project(h.relu_(), self.out.weight, self.out.bias)


def _project(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """[C, H, W] -> [hidden, H, W] by the linear map w [hidden, C] (+ bias): a 1x1 convolution."""
    return F.conv2d(x.to(w.dtype)[None], w[:, :, None, None], bias)[0]


def _upsample(x: torch.Tensor, factor: int, shape: tuple[int, int]) -> torch.Tensor:
    """A map [C, h, w] at the cell centres of a grid ``factor`` times finer, ``shape`` cells from
    the first: exact linear interpolation (coarse cell j is fine cell factor * j), edges held constant."""
    h, w = x.shape[-2:]
    y = F.interpolate(x[None], size=((h - 1) * factor + 1, (w - 1) * factor + 1), mode="bilinear",
                      align_corners=True)[0]
    return _crop(y, 0, 0, *shape)


def _coarse_to_finest(levels: Sequence[torch.Tensor], weights: Sequence[torch.Tensor], strides: Sequence[int],
                      rows: tuple[int, int], cols: tuple[int, int]) -> tuple[torch.Tensor, tuple[int, int]]:
    """Sum of the level maps (at ``strides``), each projected by its weights [hidden, C_L], on the
    finest level's cells that the pixels rows x cols need; and the first of those cells (row, col).

    Coarsest first: each sum is interpolated onto the next finer level's cells and added to it.
    Only the cells the asked pixels need are projected and kept at each step (with one cell of
    margin for the interpolation)."""
    (r0, r1), (c0, c1) = rows, cols
    acc = None
    for level, w, s in reversed(list(zip(levels, weights, strides))):
        # cells of this level needed for pixels [r0, r1): floor(r0 / s) .. ceil((r1 - 1) / s)
        a_r, b_r = r0 // s, min(-(-(r1 - 1) // s) + 1, level.shape[1])
        a_c, b_c = c0 // s, min(-(-(c1 - 1) // s) + 1, level.shape[2])
        cur = _project(level[:, a_r:b_r, a_c:b_c], w)
        if acc is not None:  # the coarser sum covers its cells [A, B): upsampled, cell 0 is this level's 2A
            prev, (A_r, B_r), (A_c, B_c) = acc
            up = _upsample(prev, 2, (2 * (B_r - A_r) - 1, 2 * (B_c - A_c) - 1))
            cur = cur.add_(_crop(up, a_r - 2 * A_r, a_c - 2 * A_c, cur.shape[1], cur.shape[2]))
        acc = (cur, (a_r, b_r), (a_c, b_c))
    cur, (a_r, _), (a_c, _) = acc
    return cur, (a_r, a_c)


def _to_pixels(finest: torch.Tensor, first: tuple[int, int], stride: int, rows: tuple[int, int],
               cols: tuple[int, int]) -> torch.Tensor:
    """The finest level's sum (cells from ``first``, at ``stride``) interpolated to the pixels rows x cols."""
    (r0, r1), (c0, c1) = rows, cols
    h, w = finest.shape[-2:]
    up = _upsample(finest, stride, (stride * (h - 1) + 1, stride * (w - 1) + 1))
    return _crop(up, r0 - stride * first[0], c0 - stride * first[1], r1 - r0, c1 - c0).contiguous()


def _crop(x: torch.Tensor, oy: int, ox: int, h: int, w: int) -> torch.Tensor:
    """x[:, oy:oy + h, ox:ox + w], edges held constant where the window reaches past x."""
    H, W = x.shape[-2:]
    pt, pl = max(0, -oy), max(0, -ox)
    pb, pr = max(0, oy + h - H), max(0, ox + w - W)
    if pt or pl or pb or pr:
        x = F.pad(x[None], (pl, pr, pt, pb), mode="replicate")[0]
        oy, ox = oy + pt, ox + pl
    return x[:, oy:oy + h, ox:ox + w]


def hypercolumns(bands: torch.Tensor, levels: Sequence[torch.Tensor], strides: Sequence[int],
                 rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """[N, C_bands + sum C_L] hypercolumns of the pixels (rows, cols) of a read window: the bands
    there and each level (at its stride s) linearly interpolated at (rows / s, cols / s), edges
    held constant, as ``logits_from_maps`` sees them."""
    parts = [bands[:, rows, cols].T]
    for lv, s in zip(levels, strides):
        parts.append(_bilinear_at(lv, rows.double() / s, cols.double() / s))
    return torch.cat([p.float() for p in parts], dim=1)


def _bilinear_at(x: torch.Tensor, y: torch.Tensor, xx: torch.Tensor) -> torch.Tensor:
    """x [C, H, W] at fractional cell positions (y, xx) [N]: [N, C], clamped at the edges."""
    H, W = x.shape[-2:]
    y = y.clamp(0, H - 1)
    xx = xx.clamp(0, W - 1)
    y0, x0 = y.floor().long(), xx.floor().long()
    y1, x1 = (y0 + 1).clamp(max=H - 1), (x0 + 1).clamp(max=W - 1)
    fy, fx = (y - y0).to(x.dtype)[:, None], (xx - x0).to(x.dtype)[:, None]
    g = lambda a, b: x[:, a, b].T  # noqa: E731
    return (g(y0, x0) * (1 - fy) * (1 - fx) + g(y0, x1) * (1 - fy) * fx
            + g(y1, x0) * fy * (1 - fx) + g(y1, x1) * fy * fx)
