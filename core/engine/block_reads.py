"""Reading a block of every input on the reference grid, ready for the encoders, while the
previous block computes.

``read_block`` reads a block's window from each input (``BandReader``), finds the valid
pixels and the output cells each modality is present in (>= 50 % valid pixels), and
normalises the values (no-data -> 0, the band mean, as zero padding in training). Dense
inputs stored as 8/16-bit integers stay in that type (``StoredRows``) and are made into
normalised float32 strip by strip as the encoder asks for rows. ``Prefetcher`` runs the
next block's read on a second thread once the caller's memory peak is behind it.
"""
from __future__ import annotations

from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import Any, Callable, Generic, Iterable, Iterator, TypeVar

import numpy as np
import torch

from ..data.normalize import normalize_
from . import windows as W
from .align import Grid
from .band_reader import BandReader


@dataclass
class InputReader:
    """One modality's reader on the reference grid, with the model card's normalisation."""

    modality: str
    path: str
    reader: BandReader
    mean: Any
    std: Any


def cell_presence(valid: torch.Tensor, grid: Grid, blk: W.Block, stride: int) -> np.ndarray:
    """[rows, cols] bool: >= 50 % of the cell's in-grid pixels are valid (``valid``: [Hr, Wr]
    of the block's read window)."""
    r0, c0 = blk.row0 * stride, blk.col0 * stride  # first pixel of the block's cells
    hr, hc = r0 - blk.read_row0, c0 - blk.read_col0
    v = valid[hr: hr + blk.rows * stride, hc: hc + blk.cols * stride]
    v = v.reshape(blk.rows, stride, blk.cols, stride).sum((1, 3), dtype=torch.int32).numpy()
    # in-grid pixels per cell: a product of per-row and per-column counts (the grid is a rectangle)
    nr = np.clip(grid.height - (r0 + stride * np.arange(blk.rows)), 0, stride)
    nc = np.clip(grid.width - (c0 + stride * np.arange(blk.cols)), 0, stride)
    n = nr[:, None] * nc[None, :]
    return (n > 0) & (v * 2 >= n)


@dataclass
class StoredRows:
    """A dense block's input kept in its stored integer type and made into the normalised
    float32 input a range of rows at a time, when the strip encoder asks for them
    (``strips.RowSource``): the float copy of the whole block (227 MB for 12 bands at 2176²)
    never exists, and each strip's copy is reused from the heap by the next."""

    raw: np.ndarray              # stored values [C, H, W] (channels-last memory)
    invalid: torch.Tensor        # bool [H, W]
    inp: InputReader
    layout: Callable[[torch.Tensor], torch.Tensor]

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (1, *self.raw.shape)

    def rows(self, a: int, b: int) -> torch.Tensor:
        t = torch.from_numpy(self.raw[:, a:b])
        x = torch.empty_like(t, dtype=torch.float32).copy_(t)  # keeps the channels-last strides
        return self.layout(normalize_(x, self.inp.modality, self.invalid[a:b], self.inp.mean, self.inp.std)[None])


@dataclass
class BlockInput:
    """One modality of a block, ready for the encoder, and the output cells it covers."""

    modality: str
    # normalised [C, Hr, Wr] (sliding) or prepared [1, C, Hr, Wr] (dense); or, dense only, the
    # values in their stored type, made into that strip by strip as the encoder runs
    values: torch.Tensor | StoredRows | None
    present: np.ndarray          # bool [rows, cols]
    valid: torch.Tensor | None = None  # bool [Hr, Wr]: the read window's pixels with data (fine outputs)


def block_buffers(inputs: list[InputReader], blk: W.Block, dense: bool) -> list[np.ndarray]:
    """The arrays ``read_block`` reads a block into. Allocated by the main thread when it starts
    the read ahead, once the current block's input is freed: they take its place in the heap
    (``heap.retained_heap``) instead of adding a second block beside it."""
    return [inp.reader.buffer(blk.read_rows, blk.read_cols, dense and inp.reader.stored_dtype is not None, dense)
            for inp in inputs]


def read_block(inputs: list[InputReader], grid: Grid, blk: W.Block, stride: int,
                layout: Callable[[torch.Tensor], torch.Tensor] | None,
                buffers: list[np.ndarray] | None = None, whole_window: bool = False,
                then: W.Block | None = None) -> list[BlockInput]:
    """Every input of a block on the reference grid, normalised (no-data -> 0) and, for dense
    mode, in the encoders' layout. Runs on the prefetch thread, beside the encoders. An input
    is left out (values None) where none of the block's cells has it, or with ``whole_window``
    (dense: neighbours pool its features) where its whole read window is no-data. ``then``: the
    block read next (the readers keep the decoded columns the two share).

    Dense inputs stored as 8/16-bit integers (Sentinel-2 reflectance) stay in that type until
    their encoder runs: the block read ahead then holds half the memory of float32."""
    out = []
    box = (blk.read_row0, blk.read_col0, blk.read_rows, blk.read_cols)
    nxt = None if then is None else (then.read_row0, then.read_col0, then.read_rows, then.read_cols)
    buffers = buffers or block_buffers(inputs, blk, layout is not None)
    for inp, buf in zip(inputs, buffers):
        stored = layout is not None and inp.reader.stored_dtype is not None
        if stored:
            raw, invalid = inp.reader.read_stored(*box, pixel_interleaved=True, out=buf, then=nxt)
            valid = ~torch.from_numpy(invalid)
        else:
            a = torch.from_numpy(inp.reader.read(*box, pixel_interleaved=layout is not None, out=buf, then=nxt))
            # a pixel is valid where every band is finite: the band sum is NaN/inf otherwise (7x faster
            # than isfinite(a).all(0) on the channels-last layout, whose band axis is the innermost).
            # The reader fills pixels outside the grid with NaN, so they are invalid too.
            valid = torch.isfinite(a.sum(0))
        present = cell_presence(valid, grid, blk, stride)
        x = None
        if valid.numpy().any() if whole_window else present.any():
            if stored:
                x = StoredRows(raw, ~valid, inp, layout)
            else:
                x = normalize_(a, inp.modality, ~valid, inp.mean, inp.std)
                if layout is not None:
                    x = layout(x[None])
        out.append(BlockInput(inp.modality, x, present, valid))
    return out


_B = TypeVar("_B")
_END = object()


class Prefetcher(Generic[_B]):
    """(block, read(block)) in order. ``read_ahead()`` starts reading the next block on
    ``pool`` while the caller still computes on the current one, so GDAL decoding and
    warping overlap the encoders. The caller picks the moment: after its memory peak, so
    the two blocks' buffers do not add up with the peak. Without a call (or a pool) the
    next block is read when it is asked for."""

    def __init__(self, pool: Executor | None, blocks: Iterable[_B], read: Callable[..., Any],
                 alloc: Callable[[_B], Any] | None = None) -> None:
        """``read(block)``, or ``read(block, alloc(block))`` with ``alloc`` run by the caller's thread."""
        self.pool, self.it, self.read, self.alloc = pool, iter(blocks), read, alloc
        self.pending: tuple[Any, Future | None] | None = None

    def read_ahead(self, before: Callable[[], None] | None = None) -> None:
        """Start reading the next block, unless a read is under way or done; ``before`` is
        called first when one starts (e.g. to free memory for its buffers)."""
        if self.pool is None or self.pending is not None:
            return
        if before is not None:
            before()
        nxt = next(self.it, _END)
        args = () if nxt is _END or self.alloc is None else (self.alloc(nxt),)
        self.pending = (nxt, None if nxt is _END else self.pool.submit(self.read, nxt, *args))

    def __iter__(self) -> Iterator[tuple[_B, Any]]:
        while True:
            if self.pending is None:
                blk = next(self.it, _END)
                if blk is _END:
                    return
                data = self.read(blk)
            else:
                (blk, fut), self.pending = self.pending, None
                if blk is _END:
                    return
                data = fut.result()
            yield blk, data


def following(blocks: list[W.Block]) -> dict[int, W.Block]:
    """Block index -> the block read after it."""
    return {b.index: n for b, n in zip(blocks, blocks[1:])}
