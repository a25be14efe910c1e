"""Block, halo and window geometry of the scene engine (pure arithmetic, no I/O).

Coordinates are pixels of the *reference grid* (rows, cols). The output grid has one cell
per ``stride`` x ``stride`` reference pixels: cell (i, j) is centred at reference pixel
coordinates ((i + 0.5) * stride, (j + 0.5) * stride) and its value is the model's answer
for the ``patch`` x ``patch`` training window centred there.

Dense mode runs the encoders over a *block* of output cells plus a *halo* of context on
every side, then averages the feature map over each training window with exact
area weights (``pool_weights``): a window of 120 px spans 7.5 feature cells at stride 16,
so the two edge cells enter with weight 0.75 / 7.5 each. Sliding-window mode cuts the
window itself (``patch_origin``) and runs the model on it, zero-padded like in training.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np


@dataclass(frozen=True)
class Block:
    """One block of output cells and the reference-grid window read for it.

    ``row0, col0, rows, cols``: output cells [row0, row0 + rows) x [col0, col0 + cols).
    ``read_row0, read_col0, read_rows, read_cols``: reference pixels read (may reach
    outside the grid: those pixels are filled as no-data).
    """

    index: int
    row0: int
    col0: int
    rows: int
    cols: int
    read_row0: int
    read_col0: int
    read_rows: int
    read_cols: int


def round_up(x: int, m: int) -> int:
    return int(math.ceil(x / m) * m)


def output_shape(height: int, width: int, stride: int) -> tuple[int, int]:
    """Output cells covering a ``height`` x ``width`` reference grid at ``stride``."""
    return max(1, math.ceil(height / stride)), max(1, math.ceil(width / stride))


def default_halo(patch: int, encoder_stride: int, context: int = 68) -> int:
    """Half a training window plus ``context`` pixels of receptive field, a multiple of the
    encoder stride (128 px for 120 px windows at stride 16)."""
    return round_up(patch // 2 + context, encoder_stride)


def iter_blocks(height: int, width: int, stride: int, block_size: int, halo: int,
                encoder_stride: int) -> Iterator[Block]:
    """Blocks of output cells, row-major, each about ``block_size`` reference pixels wide.

    The read window of a block starts ``halo`` pixels before its first cell and its size
    is rounded up to a multiple of ``encoder_stride`` so the feature grid is regular.
    """
    out_h, out_w = output_shape(height, width, stride)
    cells = max(1, block_size // stride)
    k = 0
    for r0 in range(0, out_h, cells):
        for c0 in range(0, out_w, cells):
            rows, cols = min(cells, out_h - r0), min(cells, out_w - c0)
            rr, rc = r0 * stride - halo, c0 * stride - halo
            nr = round_up(rows * stride + 2 * halo, encoder_stride)
            nc = round_up(cols * stride + 2 * halo, encoder_stride)
            yield Block(k, r0, c0, rows, cols, rr, rc, nr, nc)
            k += 1


def count_blocks(height: int, width: int, stride: int, block_size: int) -> int:
    out_h, out_w = output_shape(height, width, stride)
    cells = max(1, block_size // stride)
    return math.ceil(out_h / cells) * math.ceil(out_w / cells)


def pool_weights(n_cells: int, first: int, stride: int, offset: int, patch: int,
                 encoder_stride: int, n_feat: int) -> np.ndarray:
    """Area weights [n_cells, n_feat] that average a feature map over training windows.

    Output cell ``first + i`` is centred at reference pixel ``(first + i + 0.5) * stride``;
    the feature map starts at reference pixel ``offset`` and feature cell j covers pixels
    [offset + j * es, offset + (j + 1) * es). Row i holds the overlap of the window
    [c - patch/2, c + patch/2) with each feature cell, divided by ``patch``: rows sum to 1
    when the window lies inside the feature map (the halo guarantees it).
    """
    centre = (first + np.arange(n_cells) + 0.5) * stride - offset
    lo = centre - patch / 2.0
    hi = centre + patch / 2.0
    f_lo = np.arange(n_feat) * encoder_stride
    f_hi = f_lo + encoder_stride
    ov = np.minimum(hi[:, None], f_hi[None, :]) - np.maximum(lo[:, None], f_lo[None, :])
    return (np.clip(ov, 0.0, None) / patch).astype(np.float32)


def patch_origin(i: int, stride: int, patch: int) -> int:
    """First reference pixel of the sliding window of output cell ``i`` (one axis)."""
    return int(math.floor((i + 0.5) * stride - patch / 2.0))


def halo_overhead(block_size: int, halo: int) -> float:
    """Extra pixels computed per output pixel for a square block: (B + 2h)^2 / B^2 - 1."""
    return (block_size + 2 * halo) ** 2 / block_size**2 - 1.0
