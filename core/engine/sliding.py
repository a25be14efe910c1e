"""Sliding-window mode, the reference: each output cell's training window is cut out of its
block (read with a halo that holds the windows of the block's cells) and run through the
model exactly as a training patch (global average pool of its feature map), then the head."""
from __future__ import annotations

from concurrent.futures import Executor
from typing import Callable

import numpy as np
import torch

from . import windows as W
from .block_reads import BlockInput, InputReader, Prefetcher, block_buffers, following, read_block
from .engine_model import EngineModel, head_outputs
from .heap import retained_heap
from .outputs import OutputSet
from .plan import ScenePlan


def sliding_pass(plan: ScenePlan, em: EngineModel, readers: list[InputReader], outputs: OutputSet,
                 pool: Executor | None, check: Callable[[], None], advance: Callable[[], None]) -> None:
    """Every block: read, run each present cell's window as a patch, apply the head, write."""
    blocks = list(plan.blocks())
    after = following(blocks)
    reads = Prefetcher(pool, blocks,
                       lambda b, bufs=None: read_block(readers, plan.grid, b, plan.stride, None, bufs,
                                                       then=after.get(b.index)),
                       lambda b: block_buffers(readers, b, False))
    for blk, data in reads:
        check()
        reads.read_ahead()
        for d in data:  # a cell's window must hold enough data (SceneRequest.window_valid_min)
            d.present = d.present & (W.window_valid_fraction(
                d.valid.numpy(), blk.row0, blk.col0, blk.rows, blk.cols, plan.stride, em.patch, blk.read_row0,
                blk.read_col0) >= plan.req.window_valid_min)
        present = {d.modality: d.present for d in data}
        with retained_heap():
            feats = _sliding_block(em, data, blk, plan.stride, plan.req.batch_size)
        outputs.write_block(blk, *head_outputs(em, feats, present, blk))
        advance()


def _sliding_features(em: EngineModel, m: str, x: torch.Tensor, blk: W.Block, stride: int, batch: int,
                      cells: np.ndarray) -> torch.Tensor:
    """Features [rows, cols, D] of each cell's own window, run as a training patch.

    The block is laid out pixel-major once (channels last, as the CPU encoders run), so each
    window is copied once, row by row, straight into the batch the encoder takes (cutting
    [C, p, p] windows, stacking them and converting the stack copied every window twice)."""
    out = torch.zeros(blk.rows, blk.cols, em.dim, device=em.device)
    idx = np.argwhere(cells)
    p = em.patch
    hwc = x.permute(1, 2, 0).contiguous()  # [H, W, C]
    buf = None
    for s in range(0, len(idx), batch):
        chunk = idx[s: s + batch]
        if buf is None or buf.shape[0] != len(chunk):
            buf = torch.empty(len(chunk), p, p, x.shape[0])  # [B, p, p, C]: a channels-last [B, C, p, p]
        for k, (i, j) in enumerate(chunk):
            r = W.patch_origin(blk.row0 + i, stride, p) - blk.read_row0
            c = W.patch_origin(blk.col0 + j, stride, p) - blk.read_col0
            buf[k] = hwc[r: r + p, c: c + p]
        f = em.encode(m, buf.permute(0, 3, 1, 2)).float().mean(dim=(2, 3))
        out[chunk[:, 0], chunk[:, 1]] = f
    return out


def _sliding_block(em: EngineModel, data: list[BlockInput], blk: W.Block, stride: int,
                   batch: int) -> dict[str, torch.Tensor]:
    """Features [rows, cols, D] per modality of a block's cells, each window run as a patch."""
    feats: dict[str, torch.Tensor] = {}
    for d in data:
        if d.values is None:
            feats[d.modality] = torch.zeros(blk.rows, blk.cols, em.dim, device=em.device)
        else:
            x, d.values = d.values, None  # a tensor: sliding mode reads floats (_read_block)
            feats[d.modality] = _sliding_features(em, d.modality, x, blk, stride, batch, d.present)
    return feats
