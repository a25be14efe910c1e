"""The output rasters of a run: what each holds (``output_specs``), how a block of window
outputs is encoded into them (``write_block``), and ``OutputSet``, which creates them as
temporary files, writes them block by block, keeps the embedding sample K-means is fitted on,
and commits them all at the end (or deletes them all)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from . import windows as W
from .engine_model import EngineModel
from .request import FINE_KINDS, SceneRequest
from .writer import PROB_SCALE, OutputRaster, multihot_dtype


def output_specs(req: SceneRequest, em: EngineModel, mods: Sequence[str], tags: dict[str, str]) -> dict[str, dict]:
    """``OutputRaster`` arguments (all but path, kind and grid) of every output a request writes,
    and of the embeddings clustering needs when they are not requested (key ``"_embeddings"``)."""
    K, classes = len(em.classes), em.classes
    emb = dict(count=em.dim * len(mods), dtype="float32", nodata=float("nan"))
    specs: dict[str, dict] = {}
    for kind in req.outputs:
        if kind == "probabilities":
            specs[kind] = (dict(count=K, dtype="uint8", nodata=255, descriptions=classes, scale=1 / PROB_SCALE,
                                tags={**tags, "encoding": "p = value / 250"})
                           if req.probability_dtype == "uint8" else
                           dict(count=K, dtype="float32", nodata=float("nan"), descriptions=classes, tags=tags))
        elif kind == "dominant":
            specs[kind] = dict(count=1, dtype="uint8", nodata=255, descriptions=["dominant class"], colors=em.colors,
                               categorical=True, tags={**tags, **{f"class_{i}": c for i, c in enumerate(classes)}})
        elif kind == "multihot":
            dt, nd = multihot_dtype(K)
            at = "0.5" if em.thresholds is None else "its threshold (threshold_k, from the model card)"
            specs[kind] = dict(count=1, dtype=dt, nodata=nd, descriptions=["multi-hot classes"], categorical=True,
                               tags={**tags, "encoding": f"bit k set = class k has p >= {at}",
                                     **{f"bit_{i}": c for i, c in enumerate(classes)},
                                     **({} if em.thresholds is None else
                                        {f"threshold_{i}": f"{t:g}" for i, t in enumerate(em.thresholds)})})
        elif kind == "uncertainty":
            specs[kind] = dict(count=1, dtype="float32", nodata=float("nan"),
                               descriptions=["mean binary entropy (bits)"], tags=tags)
        elif kind == "embeddings":
            specs[kind] = dict(emb, descriptions=[f"{m}_{i}" for m in ("s2", "s1") if m in mods
                                                  for i in range(em.dim)], tags=tags)
        elif kind == "clusters":  # written after K-means, with its colours and fit in the tags
            specs[kind] = dict(count=1, dtype="uint8", nodata=255, descriptions=["cluster"], categorical=True)
        elif kind in FINE_KINDS:
            specs[kind] = _fine_spec(kind, req, em, tags)
    if "clusters" in req.outputs and "embeddings" not in req.outputs:
        specs["_embeddings"] = emb
    return specs


def _fine_spec(kind: str, req: SceneRequest, em: EngineModel, tags: dict[str, str]) -> dict:
    """``OutputRaster`` arguments of a fine (per-pixel) output: the pixel head's classes."""
    classes = em.pixel_classes
    fine_tags = {"model": tags["model"], "mode": "dense", "pixel_head": "hypercolumn", "window_px": "1"}
    if kind == "fine_classes":
        return dict(count=1, dtype="uint8", nodata=255, descriptions=["fine class"], colors=em.pixel_colors,
                    categorical=True, tags={**fine_tags, **{f"class_{i}": c for i, c in enumerate(classes)}})
    if kind == "fine_probabilities":
        if req.probability_dtype == "uint8":
            return dict(count=len(classes), dtype="uint8", nodata=255, descriptions=classes, scale=1 / PROB_SCALE,
                        tags={**fine_tags, "encoding": "p = value / 250 (softmax over the classes)"})
        return dict(count=len(classes), dtype="float32", nodata=float("nan"), descriptions=classes,
                    tags={**fine_tags, "encoding": "softmax over the classes"})
    # fine_uncertainty: entropy of the softmax over log(K): 0 = one class certain, 1 = all equally likely
    if req.probability_dtype == "uint8":
        return dict(count=1, dtype="uint8", nodata=255, descriptions=["normalised entropy"], scale=1 / PROB_SCALE,
                    tags={**fine_tags, "encoding": "u = value / 250, entropy / log(K)"})
    return dict(count=1, dtype="float32", nodata=float("nan"), descriptions=["normalised entropy"],
                tags={**fine_tags, "encoding": "entropy / log(K)"})


def write_fine(outs: dict[str, OutputRaster], row0: int, col0: int, arrays: dict[str, np.ndarray]) -> None:
    """Fine outputs of the pixels from (row0, col0): ``arrays`` kind -> [bands, h, w], already
    encoded (``fine.fine_block``)."""
    for kind, a in arrays.items():
        outs[kind].write(a, row0, col0)


def write_block(outs: dict[str, OutputRaster], blk: W.Block, probs, emb, valid, K: int, pdtype: str,
                thresholds: np.ndarray | None = None) -> None:
    """A block's window outputs; ``thresholds`` [K]: the multi-hot output's (None: 0.5)."""
    shape = (blk.rows, blk.cols)
    for kind, o in outs.items():
        if kind == "clusters" or kind in FINE_KINDS:
            continue
        if probs is None:
            nd = o.ds.nodata
            o.write(np.full((o.ds.count,) + shape, nd, dtype=o.ds.dtypes[0]), blk.row0, blk.col0)
            continue
        inv = ~valid
        if kind == "probabilities":
            if pdtype == "uint8":
                a = np.rint(probs * PROB_SCALE).astype(np.uint8)
                a[:, inv] = 255
            else:
                a = probs.astype(np.float32)
                a[:, inv] = np.nan
        elif kind == "dominant":
            a = probs.argmax(0).astype(np.uint8)[None]
            a[:, inv] = 255
        elif kind == "multihot":
            at = 0.5 if thresholds is None else thresholds.astype(probs.dtype)[:, None, None]
            bits = (probs >= at).astype(np.uint64) << np.arange(K, dtype=np.uint64)[:, None, None]
            a = bits.sum(0).astype(o.ds.dtypes[0])[None]
            a[:, inv] = o.ds.nodata
        elif kind == "uncertainty":
            a = binary_entropy(probs).astype(np.float32)[None]
            a[:, inv] = np.nan
        elif kind == "embeddings":
            a = emb.astype(np.float32)
            a[:, inv] = np.nan
        else:  # pragma: no cover
            continue
        o.write(a, blk.row0, blk.col0)


def binary_entropy(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return (-(p * np.log2(p) + (1 - p) * np.log2(1 - p))).mean(0)


class EmbeddingSample:
    """A uniform sample of at most ``size`` embedding vectors of the whole scene (priority
    sampling: each vector gets a seeded random key and the smallest keys are kept), so K-means
    is fitted in bounded memory whatever the scene size."""

    def __init__(self, size: int, dim: int, seed: int) -> None:
        self.size, self.rng = size, np.random.default_rng(seed)
        self.keys = np.empty(0)
        self.vectors = np.empty((0, dim), np.float32)

    def add(self, vecs: np.ndarray) -> None:
        self.keys = np.concatenate([self.keys, self.rng.random(len(vecs))])
        self.vectors = np.concatenate([self.vectors, vecs])
        if len(self.vectors) > self.size:
            keep = np.argsort(self.keys)[: self.size]
            self.keys, self.vectors = self.keys[keep], self.vectors[keep]


class OutputSet:
    """Every output of a run, written into hidden temporary files beside their destinations.

    The embeddings K-means needs are written to a temporary raster of their own when the
    embeddings are not an output. ``commit`` moves every file into place; ``abort`` deletes them."""

    def __init__(self, plan, em: EngineModel) -> None:
        req = plan.req
        self.req, self.specs, self.K = req, plan.specs, len(em.classes)
        self.thresholds = em.thresholds
        self.grid_args, self.tags = plan.grid_args, plan.tags
        self.outs: dict[str, OutputRaster] = {}
        self.tmp_emb: OutputRaster | None = None
        try:
            for kind, path in req.outputs.items():
                if kind != "clusters":
                    grid = plan.fine_grid_args if kind in FINE_KINDS else self.grid_args
                    self.outs[kind] = OutputRaster(path, kind, **self.specs[kind], **grid)
            if "_embeddings" in self.specs:
                d = Path(req.outputs["clusters"]).parent
                self.tmp_emb = OutputRaster(str(d / f".{Path(req.outputs['clusters']).name}.embeddings.tif"),
                                            "embeddings", **self.specs["_embeddings"], **self.grid_args)
        except BaseException:
            self.abort()
            raise
        self.embeddings = self.outs.get("embeddings") or self.tmp_emb
        self.given = {"window": [0, 0], "fine": [0, 0]}  # [cells with an answer, cells written]
        self.sample = EmbeddingSample(req.cluster_sample, em.dim * len(plan.modalities), req.seed) \
            if "clusters" in req.outputs else None

    def write_block(self, blk: W.Block, probs: np.ndarray | None, emb: np.ndarray | None, valid: np.ndarray) -> None:
        """A block's window outputs (``engine_model.head_outputs``); adds its embeddings to the sample."""
        write_block(self.outs, blk, probs, emb, valid, self.K, self.req.probability_dtype, self.thresholds)
        self.given["window"][0] += 0 if probs is None else int(valid.sum())
        self.given["window"][1] += blk.rows * blk.cols
        if self.tmp_emb is not None:
            e = np.full((self.tmp_emb.ds.count, blk.rows, blk.cols), np.nan, np.float32) if emb is None else \
                np.where(valid[None], emb, np.nan).astype(np.float32)
            self.tmp_emb.write(e, blk.row0, blk.col0)
        if self.sample is not None and emb is not None:
            self.sample.add(emb[:, valid].T)

    def write_fine(self, row0: int, col0: int, arrays: dict[str, np.ndarray]) -> None:
        """Per-pixel outputs of the pixels from (row0, col0) (``write_fine``)."""
        write_fine(self.outs, row0, col0, arrays)
        a = next(iter(arrays.values()))[0]
        self.given["fine"][0] += int((~np.isnan(a) if a.dtype.kind == "f" else a != 255).sum())
        self.given["fine"][1] += a.size

    def add(self, kind: str, raster: OutputRaster) -> None:
        """An output made after the blocks (the clusters), committed with the others."""
        self.outs[kind] = raster

    def commit(self) -> dict[str, str]:
        """Finish every output (overviews, tags) and move it into place: kind -> path."""
        for o in self.outs.values():
            o.finish()
        return {k: o.commit() for k, o in self.outs.items()}

    def abort(self) -> None:
        for o in self.outs.values():
            o.abort()
        self.drop_temporaries()

    def drop_temporaries(self) -> None:
        if self.tmp_emb is not None:
            self.tmp_emb.abort()
