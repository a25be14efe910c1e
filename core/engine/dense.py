"""Dense mode's two passes over the blocks.

1. ``encode_pass``: each encoder runs fully convolutionally over every block's own feature
   cells plus a halo of receptive-field context (stem and first stage in strips,
   ``strips.py``); the cells go to a temporary store (``feature_grid``, ``grid_store``), with
   the presence of each modality per output cell.
2. ``pool_pass``: each block's output cells sample the stored map at their window's
   feature-cell centres and average, as the model pools a patch, taking cells its neighbours
   computed where a window crosses a block edge; then the window head.

One encoder pass per input pixel (plus the halo), whatever the output stride. The next block
is read on a second thread once the block's memory peak is behind (after the optical encoder),
into buffers allocated where the freed input was.
"""
from __future__ import annotations

import dataclasses
from concurrent.futures import Executor
from typing import Any, Callable

import numpy as np
import torch

from . import windows as W
from .block_reads import BlockInput, InputReader, Prefetcher, block_buffers, following, read_block
from .engine_model import EngineModel, head_outputs
from .feature_grid import FeatureAxis
from .fine import fine_block
from .grid_store import GridStore
from .heap import release_freed, retained_heap
from .outputs import OutputSet
from .plan import ScenePlan


class FeatureStores:
    """The scene's feature maps (one store per modality: the D features of each feature cell and,
    last, the share of its pixels with data) and the per-cell presence of each modality, kept on
    disk between the two passes; ``close`` deletes them."""

    def __init__(self, plan: ScenePlan, em: EngineModel) -> None:
        self.features: dict[str, GridStore] = {}
        self.present: GridStore | None = None
        try:
            for m in plan.modalities:
                self.features[m] = GridStore(f"{plan.tag}.{m}.features", plan.store_rows, plan.store_cols, em.dim + 1)
            self.present = GridStore(f"{plan.tag}.present", plan.out_h, plan.out_w, len(plan.modalities), np.uint8)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for st in [*self.features.values(), self.present]:
            if st is not None:
                st.close()


def _owned(plan: ScenePlan, b: W.Block) -> tuple[tuple[int, int], tuple[int, int]]:
    """Feature cells (rows, cols) a block computes."""
    axes = plan.axes
    return axes[0].owned(b.row0, b.row0 + b.rows), axes[1].owned(b.col0, b.col0 + b.cols)


def _encode_window(plan: ScenePlan, b: W.Block) -> W.Block:
    """The block with its read window set to its own feature cells plus the context halo."""
    (ra, rb), (ca, cb) = _owned(plan, b)
    r0, nr = plan.axes[0].read_window(ra, rb, plan.halo)
    c0, nc = plan.axes[1].read_window(ca, cb, plan.halo)
    return dataclasses.replace(b, read_row0=r0, read_col0=c0, read_rows=nr, read_cols=nc)


def encode_pass(plan: ScenePlan, em: EngineModel, readers: list[InputReader], stores: FeatureStores | None,
                outputs: OutputSet, pool: Executor | None, check: Callable[[], None],
                advance: Callable[[], None]) -> None:
    """Pass 1: every feature cell of the scene, computed once by the block that owns it, to
    ``stores`` (None: no window output asked for); with fine outputs, the pixel head's answer
    for the pixels the block owns, written at once."""
    blocks = [_encode_window(plan, b) for b in plan.blocks()]
    after = following(blocks)
    reads = Prefetcher(pool, blocks,
                       lambda b, bufs=None: read_block(readers, plan.grid, b, plan.stride, em.prepare, bufs, True,
                                                       after.get(b.index)),
                       lambda b: block_buffers(readers, b, True))
    ctx = plan.halo // em.stride
    origin = plan.store_origin
    for blk, data in reads:
        check()
        (ra, rb), (ca, cb) = _owned(plan, blk)
        if stores is not None:
            stores.present.write(blk.row0, blk.col0, np.stack([d.present for d in data], -1).astype(np.uint8))
        fine = None
        with retained_heap():  # one block's tensors reuse each other's memory, given back after
            maps = _encode_block(em, data, lambda: reads.read_ahead(release_freed),
                                 levels=(4 if stores is not None else em.pixel_levels) if plan.fine else 0,
                                 check=check)
            if plan.fine:
                (p0, p1), (q0, q1) = plan.axes[0].owned_pixels(ra, rb, plan.grid.height), \
                    plan.axes[1].owned_pixels(ca, cb, plan.grid.width)
                if p1 > p0 and q1 > q0:
                    fine = (p0, q0, fine_block(em, data, maps, (p0 - blk.read_row0, p1 - blk.read_row0),
                                               (q0 - blk.read_col0, q1 - blk.read_col0), plan.fine_kinds,
                                               plan.req.probability_dtype, check))
                for d in data:
                    d.values = None  # the inputs were kept for the pixel head's bands
                maps = {m: None if lv is None else lv[-1][0].float() for m, lv in maps.items()}  # layer4
        reads.read_ahead()
        if fine is not None:
            outputs.write_fine(*fine)
        if stores is not None:
            e = em.stride
            for d in data:
                f = maps[d.modality]
                core = (f[:, ctx: ctx + rb - ra, ctx: ctx + cb - ca].permute(1, 2, 0) if f is not None
                        else em.blank_features(d.modality).expand(rb - ra, cb - ca, -1))
                # pooled like the features, the cells' valid shares give each window's (window_valid_min)
                frac = W.cell_valid_fraction(d.valid.numpy(), e * ctx - e // 2, e, rb - ra, cb - ca)
                stores.features[d.modality].write(ra - origin[0], ca - origin[1],
                                                  np.concatenate([core.cpu().numpy(), frac[..., None]], -1))
        advance()


def pool_pass(plan: ScenePlan, em: EngineModel, stores: FeatureStores, outputs: OutputSet,
              check: Callable[[], None], advance: Callable[[], None]) -> None:
    """Pass 2: pool the stored features over each output cell's window, apply the head, write."""
    mods = plan.modalities
    for blk in plan.blocks():
        check()
        pres = stores.present.read(blk.row0, blk.col0, blk.rows, blk.cols).astype(bool)
        present = {m: pres[..., k] for k, m in enumerate(mods)}
        feats = {}
        if pres.any():
            for m in mods:
                pooled = _pool_from_store(em, stores.features[m], plan.axes, plan.store_origin, blk, plan.stride)
                feats[m] = pooled[..., :-1]
                present[m] = present[m] & (pooled[..., -1].cpu().numpy() >= plan.req.window_valid_min)
        outputs.write_block(blk, *head_outputs(em, feats, present, blk))
        advance()


def _pool_from_store(em: EngineModel, store: GridStore, axes: tuple[FeatureAxis, FeatureAxis],
                     origin: tuple[int, int], blk: W.Block, stride: int) -> torch.Tensor:
    """Pooled features [rows, cols, D + 1] (the last: the window's share of valid pixels) of a block's cells from the scene's feature store
    (``origin``: the feature cell at store cell 0, 0)."""
    (ra, rb), (ca, cb) = axes[0].needed(blk.row0, blk.row0 + blk.rows), axes[1].needed(blk.col0, blk.col0 + blk.cols)
    fmap = torch.from_numpy(store.read(ra - origin[0], ca - origin[1], rb - ra, cb - ca)).to(em.device)
    e = em.stride
    wr = torch.from_numpy(W.pool_weights(blk.rows, blk.row0, stride, e * ra + axes[0].phase, em.patch, e,
                                         rb - ra, em.patch_cells)).to(em.device)
    wc = torch.from_numpy(W.pool_weights(blk.cols, blk.col0, stride, e * ca + axes[1].phase, em.patch, e,
                                         cb - ca, em.patch_cells)).to(em.device)
    return torch.einsum("ih,hwd,jw->ijd", wr, fmap, wc)


def _encode_block(em: EngineModel, data: list[BlockInput], past_peak: Callable[[], None],
                  levels: int = 0, check: Callable[[], None] = lambda: None) -> dict[str, Any]:
    """Dense pass 1: each modality's feature map [D, Hf, Wf] over a block's read window (None
    where the window has no valid pixel); with ``levels``, the first ``levels`` stages' outputs
    [1, C_L, h, w] instead (``EngineModel.encode_levels``), and the inputs are kept for the pixel head.
    ``past_peak`` is called once the block's memory peak is behind: after the first encoder
    (the optical one, the largest input, freed once encoded) when another follows, else before
    the only one (the read ahead overlaps it all). ``check`` (cancel) is called before each encoder."""
    if sum(d.values is not None for d in data) < 2:
        past_peak()
    out: dict[str, Any] = {}
    for d in data:
        out[d.modality] = None
        if d.values is not None:
            check()
            if levels:
                out[d.modality] = em.encode_levels(d.modality, d.values, levels)
            else:
                x, d.values = d.values, None
                out[d.modality] = em.encode(d.modality, x)[0].float()
                del x  # free the block's input before the next modality's encoder runs
        past_peak()
    return out
