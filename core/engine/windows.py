"""Block, halo and window geometry of the scene engine (pure arithmetic, no I/O).

Coordinates are pixels of the *reference grid* (rows, cols). The output grid has one cell
per ``stride`` x ``stride`` reference pixels: cell (i, j) is centred at reference pixel
coordinates ((i + 0.5) * stride, (j + 0.5) * stride) and its value is the model's answer
for the ``patch`` x ``patch`` training window centred there.

Dense mode computes the scene's feature map once (``feature_grid``: each block its own
feature cells, with a halo of receptive-field context), then pools it over each training
window the way the model pools a patch (``pool_weights``): the mean of the map at the
window's own 8 feature-cell centres (120 px at stride 16), which the feature grid's phase puts
exactly on map cells. Sliding-window mode cuts the window itself (``patch_origin``), with a
halo that holds the windows of the block's cells, and runs the model on it, zero-padded like
in training.
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


# A window output is given only where at least this share of its training window's pixels has
# data (per modality; the fusion head averages the modalities present). Windows that reach past
# the scene or into no-data see zero padding there: at the Spain scene's edge they invented
# classes. Measured on a crop of the scene against the same cells of the whole scene (real data
# all round): cells 0/1/2/3 cells from the crop's edge agreed on 22/55/75/84 %, inner cells on
# 100 %; with 0.9 the cells left agree on 92 % and more (docs/fewshot/maps.md).
WINDOW_VALID_MIN = 0.9


def round_up(x: int, m: int) -> int:
    return int(math.ceil(x / m) * m)


def aligned_cuts(start: int, stop: int, step: int) -> list[int]:
    """[start, every multiple of ``step`` inside (start, stop), stop]: where [start, stop) is cut
    so that no piece crosses a multiple of ``step`` (a file's tile edges, so that no tile is
    decoded for two pieces)."""
    return [start, *range((start // step + 1) * step, stop, step), stop]


def output_shape(height: int, width: int, stride: int) -> tuple[int, int]:
    """Output cells covering a ``height`` x ``width`` reference grid at ``stride``."""
    return max(1, math.ceil(height / stride)), max(1, math.ceil(width / stride))


def default_halo(patch: int, encoder_stride: int, context: int = 68) -> int:
    """Half a training window plus ``context`` pixels of receptive field, a multiple of the
    encoder stride (128 px for 120 px windows at stride 16)."""
    return round_up(patch // 2 + context, encoder_stride)


def block_cuts(n_out: int, stride: int, block_size: int) -> list[int]:
    """Where blocks start along an axis of ``n_out`` output cells, then ``n_out``: the axis cut
    into equal parts (sizes differ by one cell at most) of about ``block_size`` px, each up to an
    eighth larger rather than a sliver block at the end (a 2048 px scene at a 30 px stride was a
    2040 px block and a 30 px one, which read and encoded a whole context halo again: 12 % more
    encoder work)."""
    cells = max(1, block_size // stride)
    n = max(1, math.ceil(n_out / (cells * 9 / 8)))
    return [k * n_out // n for k in range(n + 1)]


def iter_blocks(height: int, width: int, stride: int, block_size: int, halo: int,
                encoder_stride: int) -> Iterator[Block]:
    """Blocks of output cells, row-major, each about ``block_size`` reference pixels wide
    (``block_cuts``).

    The read window of a block starts ``halo`` pixels before its first cell and its size
    is rounded up to a multiple of ``encoder_stride`` so the feature grid is regular.
    """
    out_h, out_w = output_shape(height, width, stride)
    rcuts, ccuts = block_cuts(out_h, stride, block_size), block_cuts(out_w, stride, block_size)
    k = 0
    for r0, r1 in zip(rcuts, rcuts[1:]):
        for c0, c1 in zip(ccuts, ccuts[1:]):
            rows, cols = r1 - r0, c1 - c0
            rr, rc = r0 * stride - halo, c0 * stride - halo
            nr = round_up(rows * stride + 2 * halo, encoder_stride)
            nc = round_up(cols * stride + 2 * halo, encoder_stride)
            yield Block(k, r0, c0, rows, cols, rr, rc, nr, nc)
            k += 1


def count_blocks(height: int, width: int, stride: int, block_size: int) -> int:
    out_h, out_w = output_shape(height, width, stride)
    return (len(block_cuts(out_h, stride, block_size)) - 1) * (len(block_cuts(out_w, stride, block_size)) - 1)


def pool_weights(n_cells: int, first: int, stride: int, offset: int, patch: int,
                 encoder_stride: int, n_feat: int, patch_cells: int) -> np.ndarray:
    """Weights [n_cells, n_feat] that pool a dense feature map the way the model pools a patch.

    On a training patch the encoder gives ``patch_cells`` feature cells per axis, centred at
    ``origin + encoder_stride * k`` (stride-2 convolutions centre output j on input 2j), and
    the model averages them. Here output cell ``first + i`` has its window at
    ``origin = patch_origin(first + i)``; the dense map, read from reference pixel ``offset``,
    has cell j centred at ``offset + encoder_stride * j``. Each of the window's cell centres
    is sampled from the map by linear interpolation, and the samples are averaged: exact
    sampling (no blur) when the window origin and the map are aligned (``FeatureAxis.phase``).
    """
    origin = np.floor((first + np.arange(n_cells) + 0.5) * stride - patch / 2.0) - offset
    pos = (origin[:, None] + encoder_stride * np.arange(patch_cells)[None, :]) / encoder_stride
    j0 = np.floor(pos).astype(np.int64)
    frac = (pos - j0).astype(np.float32)
    if j0.min() < 0 or (j0 + (frac > 0)).max() >= n_feat:
        raise ValueError("the feature map does not cover every window")
    w = np.zeros((n_cells, n_feat), np.float32)
    rows = np.repeat(np.arange(n_cells), patch_cells)
    np.add.at(w, (rows, j0.ravel()), (1.0 - frac).ravel() / patch_cells)
    nxt = np.minimum(j0 + 1, n_feat - 1).ravel()
    np.add.at(w, (rows, nxt), frac.ravel() / patch_cells)
    return w


def cell_valid_fraction(valid: np.ndarray, first: int, size: int, rows: int, cols: int, first_col: int | None = None
                        ) -> np.ndarray:
    """[rows, cols] share of valid pixels in ``size`` x ``size`` cells of ``valid`` [H, W] (bool),
    the first cell starting at pixel (first, first_col)."""
    c0 = first if first_col is None else first_col
    v = valid[first: first + rows * size, c0: c0 + cols * size]
    return v.reshape(rows, size, cols, size).mean((1, 3), dtype=np.float32)


def window_valid_fraction(valid: np.ndarray, row0: int, col0: int, rows: int, cols: int, stride: int,
                          patch: int, read_row0: int, read_col0: int) -> np.ndarray:
    """[rows, cols] share of valid pixels in the training window of each output cell (row0 + i,
    col0 + j), from ``valid`` [H, W] (bool) read from pixel (read_row0, read_col0); the pixels of
    a window outside ``valid`` count as not valid."""
    ii = np.zeros((valid.shape[0] + 1, valid.shape[1] + 1), np.int64)  # integral image
    ii[1:, 1:] = valid.cumsum(0, dtype=np.int64).cumsum(1)
    r = np.array([patch_origin(row0 + i, stride, patch) for i in range(rows)]) - read_row0
    c = np.array([patch_origin(col0 + j, stride, patch) for j in range(cols)]) - read_col0
    r0, r1 = np.clip(r, 0, valid.shape[0]), np.clip(r + patch, 0, valid.shape[0])
    c0, c1 = np.clip(c, 0, valid.shape[1]), np.clip(c + patch, 0, valid.shape[1])
    n = ii[r1][:, c1] - ii[r0][:, c1] - ii[r1][:, c0] + ii[r0][:, c0]
    return (n / float(patch * patch)).astype(np.float32)


def patch_origin(i: int, stride: int, patch: int) -> int:
    """First reference pixel of the sliding window of output cell ``i`` (one axis)."""
    return int(math.floor((i + 0.5) * stride - patch / 2.0))


def halo_overhead(block_size: int, halo: int) -> float:
    """Extra pixels computed per output pixel for a square block: (B + 2h)^2 / B^2 - 1."""
    return (block_size + 2 * halo) ** 2 / block_size**2 - 1.0
