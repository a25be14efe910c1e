"""The scene-wide grid of encoder feature cells that dense mode computes once and shares.

Dense mode used to run the encoders over each block plus a halo wide enough for the
pooling windows of its edge cells (60 px) *and* their receptive field: every block
recomputed 132 px of its neighbours on each side (27 % more pixels at 2048 px blocks). Here
each feature cell of the scene belongs to exactly one block, which computes it with a halo
of receptive-field context only; the features go to a temporary store and a second pass
pools them for every output cell, whichever block computed them.

One axis: feature cell ``g`` is centred at reference pixel ``E * g + phase`` (``E``, the
encoder stride). The phase puts the window of output cell 0, and so every window when the
output stride is a multiple of ``E``, on cell centres: pooling then samples the map exactly,
as the model pools a patch (``windows.pool_weights``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from . import windows as W


@dataclass(frozen=True)
class FeatureAxis:
    """Feature cells along one axis of an output grid of ``n_out`` cells at ``stride`` px."""

    n_out: int
    stride: int
    patch: int
    enc_stride: int
    patch_cells: int

    @property
    def phase(self) -> int:
        return W.patch_origin(0, self.stride, self.patch) % self.enc_stride

    def needed(self, i0: int, i1: int) -> tuple[int, int]:
        """Feature cells [a, b) that the windows of output cells [i0, i1) sample (with the
        next cell for linear interpolation when windows fall between centres)."""
        e, ph = self.enc_stride, self.phase
        first = W.patch_origin(i0, self.stride, self.patch)
        last = W.patch_origin(i1 - 1, self.stride, self.patch) + e * (self.patch_cells - 1)
        return math.floor((first - ph) / e), math.floor((last - ph) / e) + 2

    @property
    def cells(self) -> tuple[int, int]:
        """All feature cells the scene needs: [first, end)."""
        return self.needed(0, self.n_out)

    def owned(self, i0: int, i1: int) -> tuple[int, int]:
        """Feature cells [a, b) computed by the block of output cells [i0, i1): those centred
        on its own pixels; the first and last blocks also take the cells beyond the scene."""
        e, ph = self.enc_stride, self.phase
        a = math.ceil((i0 * self.stride - ph) / e)
        b = math.ceil((i1 * self.stride - ph) / e)
        lo, hi = self.cells
        if i0 == 0:
            a = min(a, lo)
        if i1 == self.n_out:
            b = max(b, hi)
        return max(a, lo), min(b, hi)

    def owned_pixels(self, a: int, b: int, n_pixels: int) -> tuple[int, int]:
        """Reference pixels [p0, p1) of the feature cells [a, b) (each cell's pixels are those
        within half a stride of its centre), inside [0, n_pixels): the pixels a block gives fine
        outputs for. The blocks' cells partition the scene's, so their pixels partition the grid."""
        e, ph = self.enc_stride, self.phase
        return max(0, e * a + ph - e // 2), min(n_pixels, e * b + ph - e // 2)

    def read_window(self, a: int, b: int, context: int) -> tuple[int, int]:
        """(first pixel, length) the encoder reads to compute cells [a, b) with ``context`` px
        (a multiple of the encoder stride) on both sides: cell ``a`` is map cell context / E."""
        return self.enc_stride * a + self.phase - context, self.enc_stride * (b - a) + 2 * context

