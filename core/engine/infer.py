"""Dense and sliding-window inference over whole scenes, block by block.

``run_scene`` streams the reference grid in blocks (``windows.iter_blocks``): each block
is read with a halo from every input through ``band_reader.BandReader``, normalised in place with
the model card's statistics (no-data -> 0, the band mean, as zero padding in training), and
turned into per-modality features pooled over the training window of every output cell:

- dense, two passes: (1) each encoder runs fully convolutionally over every block's own
  feature cells plus a halo of receptive-field context (stem and first stage in strips,
  ``strips.py``), and the cells go to a temporary store (``feature_grid``, ``grid_store``);
  (2) each block's output cells sample the stored map at their window's feature-cell centres
  and average, as the model pools a patch, taking cells its neighbours computed where a
  window crosses a block edge. One encoder pass per input pixel (plus the halo), whatever
  the output stride.
- sliding: the reference. Each cell's 120 x 120 window is cut out and run through the
  model exactly as a training patch (global average pool of its 8 x 8 feature map).

The next block is read on a second thread while the current one computes: in dense pass 1
once the block's memory peak is behind (after the optical encoder), into buffers allocated
where the freed input was; 8/16-bit optical values stay in their stored type until their
encoder runs. So a run holds about one block and a half, never the scene.

The fusion head is linear, so it is applied to the pooled features of the modalities
present at each cell (a modality is present where >= 50 % of the cell's pixels are valid),
then the sigmoid. Outputs are written block by block (``writer.OutputRaster``); clusters
need one more pass: embeddings are sampled while outputs are written (priority sampling, bounded),
MiniBatchKMeans is fitted on the sample, then the embedding raster is labelled block by block.
Memory is bounded by the block size, never by the scene.
"""
from __future__ import annotations

import copy
import dataclasses
import os
import time
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Generic, Iterable, Iterator, Sequence, TypeVar

import numpy as np
import rasterio
import torch
import torch.nn.functional as F
from rasterio.errors import RasterioIOError
from torch import nn

from ..data.normalize import normalize_
from ..device import resolve_device
from ..io.model_file import load_model, read_card
from ..models.mosaic import MosaicModel
from ..models.resnet import BasicBlock, Bottleneck
from . import windows as W
from .align import Grid, detect_level, guess_bands, map_bands, model_band_guess, reference_grid, sar_is_linear
from .band_reader import DAMAGED, BandReader, on_grid
from .disk_space import MB, check_free_space, remove_stale_temporaries, room_left
from .feature_grid import FeatureAxis
from .fused import fuse_pointwise
from .grid_store import GridStore
from .heap import release_freed, retained_heap
from .staging import (STAGE_MODES, CopyTooLarge, remove_staged, slow_to_decode, source_window, stage, staged_bytes,
                      staged_size, why_not_exact)
from .strips import Input, strip_encoder
from .writer import CLUSTER_COLORS, PROB_SCALE, OutputRaster, multihot_dtype

OUTPUT_KINDS = ("probabilities", "dominant", "multihot", "uncertainty", "embeddings", "clusters")
MODES = ("auto", "dense", "sliding")


class Cancelled(Exception):
    """The run was cancelled through ``is_cancelled``; no output file was left behind."""


@dataclass
class SceneRequest:
    """What to classify or embed, and how. See ``run_scene``."""

    model: str
    optical: str | None = None
    sar: str | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    optical_bands: list[str] | None = None
    sar_bands: list[str] | None = None
    sar_units: str = "auto"
    extent: tuple[float, float, float, float] | None = None
    extent_crs: str | None = None
    mode: str = "auto"
    stride: int | None = None
    device: str = "auto"
    batch_size: int = 16
    threads: int | None = None
    probability_dtype: str = "uint8"
    clusters: int = 8
    cluster_sample: int = 20000
    seed: int = 0
    block_size: int = 2048
    # optional extras
    halo: int | None = None           # context read around a block (dense: 64 px of receptive field; sliding: 128 px)
    optical_level: str = "auto"       # auto | L1C | L2A: what the optical input is (auto: from name/metadata)
    compile: bool = False             # torch.compile the encoders (pays on long runs)
    prefetch: bool = True             # read the next block while this one computes (about half a block more in RAM)
    stage: str = "auto"               # auto | always | never: decode slow inputs once before the run (staging.py)


@dataclass
class SceneResult:
    outputs: dict[str, str]
    crs: str
    width: int
    height: int
    mode: str
    warnings: list[str]
    seconds: float
    stride: int = 0
    blocks: int = 0
    staged: dict[str, str] = field(default_factory=dict)  # input ("optical"/"SAR") -> why it was decoded once first


# --------------------------------------------------------------------------- model

def fold_batchnorm(encoder: nn.Module) -> nn.Module:
    """A copy of a ResNet encoder (eval) with every BatchNorm folded into its convolution."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    enc = copy.deepcopy(encoder).eval()
    pairs = [(enc, "conv1", "bn1")]
    for m in enc.modules():
        if isinstance(m, (BasicBlock, Bottleneck)):
            pairs += [(m, "conv1", "bn1"), (m, "conv2", "bn2")]
            if isinstance(m, Bottleneck):
                pairs.append((m, "conv3", "bn3"))
            if m.downsample is not None:
                pairs.append((m.downsample, "0", "1"))
    for parent, c, b in pairs:
        conv, bn = getattr(parent, c) if c != "0" else parent[0], getattr(parent, b) if b != "1" else parent[1]
        fused = fuse_conv_bn_eval(conv, bn)
        if c == "0":
            parent[0], parent[1] = fused, nn.Identity()
        else:
            setattr(parent, c, fused)
            setattr(parent, b, nn.Identity())
    return enc


class EngineModel:
    """The parts of a MosaicModel the engine uses, prepared for fast inference."""

    def __init__(self, model: MosaicModel, card: dict[str, Any], device: torch.device,
                 compile: bool = False) -> None:
        self.device = device
        self.card = card
        self.classes = list(model.cfg.classes)
        self.colors = [c.get("color", "#808080") for c in card.get("classes", [])] or None
        self.stride = model.output_stride
        self.dim = model.feature_dim
        inputs = card.get("inputs", {})
        self.patch = int(inputs.get("patch_size", 120))
        self.pixel_size = float(inputs.get("pixel_size_m", 10))
        self.modalities = list(model.encoders)
        self.bands = {"s2": list(model.cfg.s2_bands), "s1": list(model.cfg.s1_bands)}
        self.stats = {m: (inputs.get(m, {}).get("mean"), inputs.get(m, {}).get("std")) for m in ("s2", "s1")}
        self.level = inputs.get("s2", {}).get("level")
        self.reference = model  # unfused, for the sliding-window reference
        self.encoders = {}
        self.row_inputs = device.type == "cpu" and not compile  # StripEncoders take RowSources
        self.fused: dict[str, bool] = {}  # per encoder: convolution, sum and ReLU as one operation (fused.py)
        for m, enc in model.encoders.items():
            e = fold_batchnorm(enc).to(device)
            if device.type == "cpu":
                e, self.fused[m] = fuse_pointwise(e)
                # stem + first stage strip by strip: same map, a third of the activation memory
                e = strip_encoder(e.to(memory_format=torch.channels_last))
            if compile:
                e = torch.compile(e, dynamic=True)
            self.encoders[m] = e
        # feature cells per axis the encoders give on one training patch (8 for 120 px at stride 16)
        with torch.inference_mode():
            enc0 = next(iter(model.encoders.values())).eval()
            self.patch_cells = int(enc0(torch.zeros(1, enc0.in_channels, self.patch, self.patch)).shape[-1])
        self.head_w = {m: model.head.linear[m].weight.detach().to(device) for m in model.head.linear}
        self.head_b = model.head.bias.detach().to(device)
        self.autocast = device.type == "cuda"
        self._blank: dict[str, torch.Tensor] = {}

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] on the device in the layout the encoders run fastest in."""
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.device.type == "cpu" else x

    @torch.inference_mode()
    def encode(self, m: str, x: Input) -> torch.Tensor:
        """[B, C, H, W] normalised -> feature map [B, D, H/16, W/16] (float32). ``x`` may be a
        ``RowSource`` that makes prepared rows: the strip encoders take it as it is."""
        if not isinstance(x, torch.Tensor):
            if self.row_inputs:
                return self.encoders[m](x)
            x = x.rows(0, x.shape[2])
        x = self.prepare(x)
        if self.autocast:
            with torch.autocast("cuda", dtype=torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16):
                return self.encoders[m](x).float()
        return self.encoders[m](x)

    @torch.inference_mode()
    def blank_features(self, m: str) -> torch.Tensor:
        """[D] features of an all-no-data window (zeros after normalisation): the same at every
        cell, since zero padding is zero input. Stands for blocks whose read window has no data."""
        if m not in self._blank:
            c = len(self.bands[m])
            self._blank[m] = self.encode(m, torch.zeros(1, c, 4 * self.stride, 4 * self.stride))[0, :, 1, 1].float()
        return self._blank[m]

    @torch.inference_mode()
    def head(self, feats: dict[str, torch.Tensor], present: dict[str, torch.Tensor]) -> torch.Tensor:
        """feats[m]: [N, D], present[m]: [N] -> probabilities [N, K]."""
        num, den = 0.0, 0.0
        for m, f in feats.items():
            p = present[m][:, None]
            num = num + (f @ self.head_w[m].T) * p
            den = den + p
        return torch.sigmoid(num / den.clamp_min(1.0) + self.head_b)


# --------------------------------------------------------------------------- inputs

@dataclass
class _Input:
    modality: str
    path: str
    reader: BandReader
    mean: Any
    std: Any


def _open(path: str, what: str):
    if not Path(path).exists() and not str(path).startswith("/vsi"):
        raise FileNotFoundError(f"{what} raster {path} not found")
    try:
        return rasterio.open(path)
    except RasterioIOError as e:
        raise ValueError(f"{what} raster {path} cannot be read by GDAL: {e}") from None


def describe_inputs(optical: str | None, sar: str | None, model: str) -> dict:
    """Band mapping guesses and facts per input, for a UI to show and edit.

    Returns ``{'model': {...}, 'optical': {...} | None, 'sar': {...} | None}``; each input has
    path, crs, size, resolution, count, descriptions, ``bands`` (a guess of the file band
    names, '?' unknown, '-' for bands the model does not use), ``missing`` (model bands not
    found), and level (optical) or units (SAR). Raises ValueError/FileNotFoundError.
    """
    card = read_card(model)
    arch = card.get("architecture", {})
    need = {"s2": list(arch.get("s2_bands", [])), "s1": list(arch.get("s1_bands", []))}
    out: dict[str, Any] = {"model": {"s2_bands": need["s2"], "s1_bands": need["s1"],
                                     "level": card.get("inputs", {}).get("s2", {}).get("level"),
                                     "modalities": list(arch.get("modalities", []))},
                           "optical": None, "sar": None}
    if optical is None and sar is None:
        raise ValueError("give an optical (Sentinel-2) and/or a SAR (Sentinel-1) raster")
    for key, path, m in (("optical", optical, "s2"), ("sar", sar, "s1")):
        if path is None:
            continue
        with _open(path, key) as src:
            guess, missing = model_band_guess(src.descriptions, src.count, m, need[m])
            info = {"path": str(path), "crs": src.crs.to_string() if src.crs else None,
                    "width": src.width, "height": src.height, "resolution": src.res, "count": src.count,
                    "descriptions": list(src.descriptions), "bands": guess, "missing": missing}
            if m == "s2":
                info["level"] = detect_level(str(path), src.tags(), guess_bands(src.descriptions, src.count, m))
            else:
                idx = [i + 1 for i, g in enumerate(guess) if g in need[m]] or [1]
                info["units"] = "linear" if sar_is_linear(src, idx) else "db"
            out[key] = info
    return out


# --------------------------------------------------------------------------- blocks

def _cell_presence(valid: torch.Tensor, grid: Grid, blk: W.Block, stride: int) -> np.ndarray:
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


def _pool_from_store(em: EngineModel, store: GridStore, axes: tuple[FeatureAxis, FeatureAxis],
                     origin: tuple[int, int], blk: W.Block, stride: int) -> torch.Tensor:
    """Pooled features [rows, cols, D] of a block's cells from the scene's feature store
    (``origin``: the feature cell at store cell 0, 0)."""
    (ra, rb), (ca, cb) = axes[0].needed(blk.row0, blk.row0 + blk.rows), axes[1].needed(blk.col0, blk.col0 + blk.cols)
    fmap = torch.from_numpy(store.read(ra - origin[0], ca - origin[1], rb - ra, cb - ca)).to(em.device)
    e = em.stride
    wr = torch.from_numpy(W.pool_weights(blk.rows, blk.row0, stride, e * ra + axes[0].phase, em.patch, e,
                                         rb - ra, em.patch_cells)).to(em.device)
    wc = torch.from_numpy(W.pool_weights(blk.cols, blk.col0, stride, e * ca + axes[1].phase, em.patch, e,
                                         cb - ca, em.patch_cells)).to(em.device)
    return torch.einsum("ih,hwd,jw->ijd", wr, fmap, wc)


def _sliding_features(em: EngineModel, m: str, x: np.ndarray, blk: W.Block, stride: int, batch: int,
                      cells: np.ndarray) -> torch.Tensor:
    """Features [rows, cols, D] of each cell's own window, run as a training patch."""
    out = torch.zeros(blk.rows, blk.cols, em.dim, device=em.device)
    idx = np.argwhere(cells)
    p = em.patch
    for s in range(0, len(idx), batch):
        chunk = idx[s: s + batch]
        patches = []
        for i, j in chunk:
            r = W.patch_origin(blk.row0 + i, stride, p) - blk.read_row0
            c = W.patch_origin(blk.col0 + j, stride, p) - blk.read_col0
            patches.append(x[:, r: r + p, c: c + p])
        f = em.encode(m, torch.from_numpy(np.stack(patches))).float().mean(dim=(2, 3))
        out[chunk[:, 0], chunk[:, 1]] = f
    return out


@dataclass
class _StoredRows:
    """A dense block's input kept in its stored integer type and made into the normalised
    float32 input a range of rows at a time, when the strip encoder asks for them
    (``strips.RowSource``): the float copy of the whole block (227 MB for 12 bands at 2176²)
    never exists, and each strip's copy is reused from the heap by the next."""

    raw: np.ndarray              # stored values [C, H, W] (channels-last memory)
    invalid: torch.Tensor        # bool [H, W]
    inp: _Input
    layout: Callable[[torch.Tensor], torch.Tensor]

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (1, *self.raw.shape)

    def rows(self, a: int, b: int) -> torch.Tensor:
        t = torch.from_numpy(self.raw[:, a:b])
        x = torch.empty_like(t, dtype=torch.float32).copy_(t)  # keeps the channels-last strides
        return self.layout(normalize_(x, self.inp.modality, self.invalid[a:b], self.inp.mean, self.inp.std)[None])


@dataclass
class _BlockInput:
    """One modality of a block, ready for the encoder, and the output cells it covers."""

    modality: str
    # normalised [C, Hr, Wr] (sliding) or prepared [1, C, Hr, Wr] (dense); or, dense only, the
    # values in their stored type, made into that strip by strip as the encoder runs
    values: torch.Tensor | _StoredRows | None
    present: np.ndarray          # bool [rows, cols]


def _block_buffers(inputs: list[_Input], blk: W.Block, dense: bool) -> list[np.ndarray]:
    """The arrays ``_read_block`` reads a block into. Allocated by the main thread when it starts
    the read ahead, once the current block's input is freed: they take its place in the heap
    (``heap.retained_heap``) instead of adding a second block beside it."""
    return [inp.reader.buffer(blk.read_rows, blk.read_cols, dense and inp.reader.stored_dtype is not None, dense)
            for inp in inputs]


def _read_block(inputs: list[_Input], grid: Grid, blk: W.Block, stride: int,
                layout: Callable[[torch.Tensor], torch.Tensor] | None,
                buffers: list[np.ndarray] | None = None, whole_window: bool = False,
                then: W.Block | None = None) -> list[_BlockInput]:
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
    buffers = buffers or _block_buffers(inputs, blk, layout is not None)
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
        present = _cell_presence(valid, grid, blk, stride)
        x = None
        if valid.numpy().any() if whole_window else present.any():
            if stored:
                x = _StoredRows(raw, ~valid, inp, layout)
            else:
                x = normalize_(a, inp.modality, ~valid, inp.mean, inp.std)
                if layout is not None:
                    x = layout(x[None])
        out.append(_BlockInput(inp.modality, x, present))
    return out


def _encode_block(em: EngineModel, data: list[_BlockInput], past_peak: Callable[[], None]) -> dict[str, torch.Tensor | None]:
    """Dense pass 1: each modality's feature map [D, Hf, Wf] over a block's read window (None
    where the window has no valid pixel). ``past_peak`` is called once the block's memory
    peak is behind: after the first encoder (the optical one, the largest input, freed once
    encoded) when another follows, else before the only one (the read ahead overlaps it all)."""
    if sum(d.values is not None for d in data) < 2:
        past_peak()
    out: dict[str, torch.Tensor | None] = {}
    for d in data:
        out[d.modality] = None
        if d.values is not None:
            x, d.values = d.values, None
            out[d.modality] = em.encode(d.modality, x)[0].float()
            del x  # free the block's input before the next modality's encoder runs
        past_peak()
    return out


def _sliding_block(em: EngineModel, data: list[_BlockInput], blk: W.Block, stride: int,
                   batch: int) -> dict[str, torch.Tensor]:
    """Features [rows, cols, D] per modality of a block's cells, each window run as a patch."""
    feats: dict[str, torch.Tensor] = {}
    for d in data:
        if d.values is None:
            feats[d.modality] = torch.zeros(blk.rows, blk.cols, em.dim, device=em.device)
        else:
            x, d.values = d.values, None  # a tensor: sliding mode reads floats (_read_block)
            feats[d.modality] = _sliding_features(em, d.modality, x.numpy(), blk, stride, batch, d.present)
    return feats


def _head_outputs(em: EngineModel, feats: dict[str, torch.Tensor], present: dict[str, np.ndarray], blk: W.Block):
    """(probs [K, rows, cols] or None where nothing valid, embeddings [E, rows, cols], valid [rows, cols])
    from pooled features [rows, cols, D] and presence [rows, cols] per modality."""
    any_present = np.zeros((blk.rows, blk.cols), bool)
    for p in present.values():
        any_present |= p
    if not any_present.any():
        return None, None, any_present
    n = blk.rows * blk.cols
    fl = {m: f.reshape(n, -1) for m, f in feats.items()}
    pr = {m: torch.from_numpy(p.reshape(n)).to(em.device, torch.float32) for m, p in present.items()}
    probs = em.head(fl, pr).T.reshape(-1, blk.rows, blk.cols)
    emb = torch.cat([F.normalize(fl[m], dim=1) * pr[m][:, None] for m in ("s2", "s1") if m in fl], dim=1)
    emb = emb.T.reshape(-1, blk.rows, blk.cols)
    return probs.cpu().numpy(), emb.cpu().numpy(), any_present


_B = TypeVar("_B")
_END = object()


class _Prefetcher(Generic[_B]):
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


LABEL = {"s2": "optical", "s1": "SAR"}  # how messages name a modality's input


def _following(blocks: list[W.Block]) -> dict[int, W.Block]:
    """Block index -> the block read after it."""
    return {b.index: n for b, n in zip(blocks, blocks[1:])}


def _store_tag(req: SceneRequest) -> str:
    """Path prefix of dense mode's temporary feature stores: hidden, beside the first output."""
    first = Path(next(iter(req.outputs.values())))
    return str(first.parent / f".{first.name}.{os.getpid()}")


def _feature_extent(axes: tuple[FeatureAxis, FeatureAxis]) -> tuple[tuple[int, int], int, int]:
    """(feature cell at store cell (0, 0), rows, cols) of dense mode's scene-wide feature store."""
    (r0, r1), (c0, c1) = axes[0].cells, axes[1].cells
    return (r0, c0), r1 - r0, c1 - c0


def _output_specs(req: SceneRequest, em: EngineModel, mods: Sequence[str], tags: dict[str, str]) -> dict[str, dict]:
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
            specs[kind] = dict(count=1, dtype=dt, nodata=nd, descriptions=["multi-hot classes"], categorical=True,
                               tags={**tags, "encoding": "bit k set = class k has p >= 0.5",
                                     **{f"bit_{i}": c for i, c in enumerate(classes)}})
        elif kind == "uncertainty":
            specs[kind] = dict(count=1, dtype="float32", nodata=float("nan"),
                               descriptions=["mean binary entropy (bits)"], tags=tags)
        elif kind == "embeddings":
            specs[kind] = dict(emb, descriptions=[f"{m}_{i}" for m in ("s2", "s1") if m in mods
                                                  for i in range(em.dim)], tags=tags)
        elif kind == "clusters":  # written after K-means, with its colours and fit in the tags
            specs[kind] = dict(count=1, dtype="uint8", nodata=255, descriptions=["cluster"], categorical=True)
    if "clusters" in req.outputs and "embeddings" not in req.outputs:
        specs["_embeddings"] = emb
    return specs


def _disk_needs(req: SceneRequest, specs: dict[str, dict], cells: int,
                stores: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """(file, bytes at most) of every file a run writes: each output uncompressed with a third
    more for overviews and a header; ``stores``: dense mode's feature stores."""
    header = 64 * 1024  # TIFF header, tile index, colour table, tags
    return [(req.outputs["clusters" if k == "_embeddings" else k],  # beside the clusters it is for
             cells * sp["count"] * np.dtype(sp["dtype"]).itemsize * 4 // 3 + header)
            for k, sp in specs.items()] + stores


def _staging_plan(req: SceneRequest, srcs: dict[str, Any], maps: dict[str, Any], grid: Grid,
                  direct: dict[str, bool], tag: str, warns: list[str]) -> dict[str, tuple[Any, str, int, str]]:
    """modality -> (source window, staged file, its bytes, why) of the inputs a run decodes
    once before its blocks (``staging``): JPEG 2000 and band files in large compressed tiles
    (``slow_to_decode``) with ``auto``, every input with ``always``;
    an input a copy would not read the same as is read as it is (with a warning for ``always``)."""
    plan = {}
    for m, src in srcs.items():
        why = None if req.stage == "never" else slow_to_decode(src)
        if req.stage == "always":
            why = why or "asked for"
        problem = why_not_exact(src, maps[m].indexes, direct[m]) if why else None
        if problem:
            why = None
            if req.stage == "always":
                warns.append(f"the {LABEL[m]} input is read as it is: a temporary copy "
                             f"would not keep its {problem}")
        win = source_window(src, grid, direct[m]) if why else None
        if win is not None:
            plan[m] = (win, f"{tag}.{m}.staged.tif", staged_bytes(src, maps[m].indexes, win), why)
    return plan


def _fit_staging(to_stage: dict[str, tuple[Any, str, int, str]], needs: list[tuple[str, int]], what: str,
                 mode: str, warns: list[str]) -> int | None:
    """Where the disk lacks room for the uncompressed copies of ``to_stage`` beside ``needs``:
    the bytes that compressed copies may share, when that is at least a third of their size
    (real Sentinel-2 bands compress 2-2.5x: with less, the copy would outgrow it near its end
    and the time spent on it be lost); else, with ``auto``, the inputs are read as they are
    (``to_stage`` emptied) and with ``always`` the disk-space error is raised. None: room enough
    for uncompressed copies."""
    if not to_stage:
        return None
    copies = [(p, n) for _, p, n, _ in to_stage.values()]  # all beside the outputs, on one disk
    full = sum(n for _, n in copies)
    room = room_left(needs, copies[0][0])
    if room >= full:
        return None
    if room >= full // 3:
        warns.append(f"not enough free disk space for an uncompressed temporary copy of the input(s) decoded once "
                     f"({full / MB:.0f} MB): it is compressed into the {room / MB:.0f} MB left, which makes it "
                     f"a little slower to read")
        return room
    if mode == "always":
        check_free_space(needs + copies, what)  # raises, with the figures
    warns.append("not enough free disk space to decode the input(s) once into a temporary copy "
                 f"({full / MB:.0f} MB, or a third of that compressed): read as they are, which is several "
                 "times slower")
    to_stage.clear()
    return None


def _binary_entropy(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return (-(p * np.log2(p) + (1 - p) * np.log2(1 - p))).mean(0)


# --------------------------------------------------------------------------- run

def _check_request(req: SceneRequest) -> None:
    if req.optical is None and req.sar is None:
        raise ValueError("give an optical (Sentinel-2) and/or a SAR (Sentinel-1) raster")
    if not req.outputs:
        raise ValueError(f"ask for at least one output: {', '.join(OUTPUT_KINDS)}")
    bad = [k for k in req.outputs if k not in OUTPUT_KINDS]
    if bad:
        raise ValueError(f"unknown output kind(s) {bad}; choose from {', '.join(OUTPUT_KINDS)}")
    if req.mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {req.mode!r}")
    if req.stage not in STAGE_MODES:
        raise ValueError(f"stage must be one of {', '.join(STAGE_MODES)}, got {req.stage!r}")
    if req.sar_units not in ("auto", "db", "linear"):
        raise ValueError(f"sar_units must be auto, db or linear, got {req.sar_units!r}")
    if req.probability_dtype not in ("uint8", "float32"):
        raise ValueError(f"probability_dtype must be uint8 or float32, got {req.probability_dtype!r}")
    if req.stride is not None and req.stride < 1:
        raise ValueError(f"stride must be >= 1 pixel, got {req.stride}")
    if req.batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {req.batch_size}")
    if "clusters" in req.outputs and not (2 <= req.clusters <= 254):
        raise ValueError(f"clusters must be between 2 and 254, got {req.clusters}")
    if req.optical_level.upper() not in ("AUTO", "L1C", "L2A"):
        raise ValueError(f"optical_level must be auto, L1C or L2A, got {req.optical_level!r}")
    paths = list(req.outputs.values())
    if len(set(map(os.path.abspath, paths))) != len(paths):
        raise ValueError("two outputs have the same path")
    for p in paths:
        if not Path(p).parent.is_dir():
            raise FileNotFoundError(f"output folder {Path(p).parent} does not exist")


# 'auto' picks dense only where dense agrees with the sliding-window reference on >= 90 % of the
# dominant classes. Measured with the bundled model (benchmarks/dense_agreement.py), since dense
# pools the map at the patch's own feature-cell centres: Spain S2 + S1 93.3 % (stride 16 px),
# 90.6 % (32 px); USA S2 L1C 97.7 % (16 px). So auto = dense.
AUTO_DENSE = True
# Dense mode computes each feature cell once, reading DENSE_CONTEXT px of receptive-field context
# around the cells a block owns (``feature_grid``); the pooling windows of edge cells take their
# neighbours' features from the store instead of a wider halo.
DENSE_CONTEXT = 64


def run_scene(request: SceneRequest, progress: Callable[[float], None] | None = None,
              is_cancelled: Callable[[], bool] | None = None) -> SceneResult:
    """Classify and/or embed a scene; writes the requested outputs.

    Args:
        request: inputs, outputs and options (``SceneRequest``).
        progress: called with the fraction done (0..1) after every block.
        is_cancelled: polled before every block; when it returns True the run stops,
            every temporary file is deleted and ``Cancelled`` is raised.

    Returns:
        ``SceneResult`` with the written paths, output grid and warnings.

    Raises:
        ValueError / FileNotFoundError: a problem the user can fix (message says how).
        Cancelled: the run was cancelled; nothing was written.
    """
    t0 = time.perf_counter()
    req = request
    _check_request(req)
    progress = progress or (lambda f: None)
    is_cancelled = is_cancelled or (lambda: False)
    warns: list[str] = []
    device = resolve_device(req.device)
    if req.threads:
        torch.set_num_threads(int(req.threads))
    model, card = load_model(req.model, "cpu")
    em = EngineModel(model, card, device, compile=req.compile)
    given = {"s2": req.optical, "s1": req.sar}
    for m, p in given.items():
        if p is not None and m not in em.modalities:
            raise ValueError(f"the model {req.model} has no {m} encoder (it takes {em.modalities}); "
                             f"leave the {LABEL[m]} input out")

    srcs = {m: _open(p, LABEL[m]) for m, p in given.items() if p is not None}
    readers: list[_Input] = []
    outs: dict[str, OutputRaster] = {}
    tmp_emb: OutputRaster | None = None
    stores: dict[str, GridStore] = {}  # dense mode's feature maps between its two passes
    staged_files: list[str] = []  # inputs decoded once (staging.py), deleted when the run ends
    pool = ThreadPoolExecutor(1, thread_name_prefix="mosaic-read")
    try:
        maps = {}
        for m, src in srcs.items():
            what = "optical raster" if m == "s2" else "SAR raster"
            explicit = req.optical_bands if m == "s2" else req.sar_bands
            maps[m] = map_bands(src.name, src.count, src.descriptions, em.bands[m], explicit, what)
        if "s2" in srcs:
            lvl = req.optical_level.upper()
            lvl = detect_level(srcs["s2"].name, srcs["s2"].tags(),
                               guess_bands(srcs["s2"].descriptions, srcs["s2"].count, "s2")) if lvl == "AUTO" else lvl
            if em.level and lvl and lvl != em.level:
                warns.append(f"the optical input is {lvl} but the model was trained on {em.level}: expect a "
                             f"domain shift (top-of-atmosphere vs surface reflectance); prefer {em.level} data")
            elif em.level and not lvl:
                warns.append(f"the processing level of the optical input is unknown; the model expects {em.level}")
        to_db = False
        if "s1" in srcs:
            units = req.sar_units
            if units == "auto":
                units = "linear" if sar_is_linear(srcs["s1"], maps["s1"].indexes) else "db"
                if units == "linear":
                    warns.append("the SAR input looks like linear power: converted to dB (10 log10); "
                                 "set sar_units='db' if it already is")
            to_db = units == "linear"
        primary = srcs.get("s2") or srcs["s1"]
        others = [s for s in srcs.values() if s is not primary]
        grid, native = reference_grid(primary, others, em.pixel_size, req.extent, req.extent_crs)
        if not native:
            warns.append(f"inputs resampled to a {em.pixel_size:g} m grid in {grid.crs.to_string()}")
        mode = req.mode
        if mode == "auto":
            mode = "dense" if AUTO_DENSE else "sliding"
        stride = req.stride or (em.stride if mode == "dense" else em.patch // 2)
        if mode == "dense":  # receptive-field context around each block's own feature cells
            # (at least one feature cell: the read window must hold the pixels of the block's cells)
            halo = max(em.stride, W.round_up(req.halo if req.halo is not None else DENSE_CONTEXT, em.stride))
        else:  # the windows of the block's cells
            halo = max(req.halo if req.halo is not None else W.default_halo(em.patch, em.stride),
                       em.patch // 2 + stride)
        block = max(req.block_size, stride)
        out_h, out_w = W.output_shape(grid.height, grid.width, stride)
        out_tf = grid.transform * rasterio.Affine.scale(stride)
        nblocks = W.count_blocks(grid.height, grid.width, stride, block)

        K = len(em.classes)
        n_emb = em.dim * len(srcs)
        axes = (FeatureAxis(out_h, stride, em.patch, em.stride, em.patch_cells),
                FeatureAxis(out_w, stride, em.patch, em.stride, em.patch_cells))
        origin, frows, fcols = _feature_extent(axes)
        tag = _store_tag(req)
        stale = remove_stale_temporaries(tag)
        if stale:
            warns.append(f"deleted {len(stale)} temporary file(s) ({sum(n for _, n in stale) / MB:.0f} MB) that an "
                         f"earlier run beside {Path(next(iter(req.outputs.values()))).name} left when it was stopped")
        common = dict(crs=grid.crs, transform=out_tf, width=out_w, height=out_h)
        tags = {"model": Path(req.model).name, "mode": mode, "stride_px": str(stride),
                "window_px": str(em.patch)}
        specs = _output_specs(req, em, list(srcs), tags)
        store_bytes = [(tag, frows * fcols * em.dim * 4 * len(srcs)), (tag, out_h * out_w * len(srcs))] \
            if mode == "dense" else []
        direct = {m: on_grid(src, grid) for m, src in srcs.items()}
        to_stage = _staging_plan(req, srcs, maps, grid, direct, tag, warns)
        needs = _disk_needs(req, specs, out_h * out_w, store_bytes)
        what = f"this {mode} run ({out_w} x {out_h} output cells)"
        check_free_space(needs, what)
        room = _fit_staging(to_stage, needs, what, req.stage, warns)  # None: uncompressed copies
        for kind, path in req.outputs.items():
            if kind != "clusters":
                outs[kind] = OutputRaster(path, kind, **specs[kind], **common)
        if "_embeddings" in specs:
            d = Path(req.outputs["clusters"]).parent
            tmp_emb = OutputRaster(str(d / f".{Path(req.outputs['clusters']).name}.embeddings.tif"), "embeddings",
                                   **specs["_embeddings"], **common)
        emb_out = outs.get("embeddings") or tmp_emb
        want_clusters = "clusters" in req.outputs
        rng = np.random.default_rng(req.seed)
        sample_keys = np.empty(0)
        sample = np.empty((0, n_emb), np.float32)

        total_steps = nblocks * ((2 if mode == "dense" else 1) + (1 if want_clusters else 0) + len(to_stage))
        step = 0
        staged: dict[str, str] = {}
        still = sum(n for _, _, n, _ in to_stage.values())  # uncompressed bytes of the copies still to make
        for m, (win, path, nbytes, why) in list(to_stage.items()):  # weighed as one pass over the blocks each
            done = step
            staged_files.append(path)
            step += nblocks
            # compressed copies share the room: each its share of what the ones before it left
            budget = None if room is None else room * nbytes // still
            still -= nbytes
            try:
                if not stage(srcs[m].name, maps[m].indexes, win, path,
                             lambda f: progress((done + f * nblocks) / total_steps), is_cancelled,
                             compress=room is not None, max_bytes=budget):
                    raise Cancelled("cancelled")
                if room is not None:
                    room -= staged_size(path)
            except CopyTooLarge as e:
                if req.stage == "always":
                    raise ValueError(f"not enough free disk space: {e}. Free some space or write the outputs "
                                     f"to another disk") from None
                warns.append(f"{e}: the {LABEL[m]} input is read as it is, which is several times slower")
                del to_stage[m]
                continue
            staged[LABEL[m]] = why
        for m, src in srcs.items():
            mean, std = em.stats[m]
            name, hint = f"the {LABEL[m]} raster {src.name}", DAMAGED
            if m in to_stage:  # the staged copy holds the model's bands, in its order
                path, idx = to_stage[m][1], list(range(1, len(maps[m].indexes) + 1))
                name = f"the temporary copy of {name} ({path})"
                hint = ("The disk beside the outputs may have failed; write the outputs to another disk, or read "
                        "the input as it is (stage 'never')")
            else:
                path, idx = src.name, maps[m].indexes
            readers.append(_Input(m, path, BandReader(path, idx, grid, direct[m], to_db=to_db and m == "s1",
                                                      name=name, hint=hint), mean, std))

        def finish_block(blk: W.Block, probs, emb, valid) -> None:
            """Write a block's outputs, sample its embeddings for K-means, report progress."""
            nonlocal sample, sample_keys, step
            _write_block(outs, blk, probs, emb, valid, K, req.probability_dtype)
            if emb_out is not None and emb_out is tmp_emb:
                e = np.full((n_emb, blk.rows, blk.cols), np.nan, np.float32) if emb is None else \
                    np.where(valid[None], emb, np.nan).astype(np.float32)
                emb_out.write(e, blk.row0, blk.col0)
            if want_clusters and emb is not None:
                vecs = emb[:, valid].T
                sample_keys = np.concatenate([sample_keys, rng.random(len(vecs))])
                sample = np.concatenate([sample, vecs])
                if len(sample) > req.cluster_sample:
                    keep = np.argsort(sample_keys)[: req.cluster_sample]
                    sample_keys, sample = sample_keys[keep], sample[keep]
            advance()

        def advance() -> None:
            nonlocal step
            step += 1
            progress(step / total_steps)

        def check() -> None:
            if is_cancelled():
                raise Cancelled("cancelled")

        if mode == "dense":
            # pass 1: every feature cell of the scene, computed once by the block that owns it
            for m in srcs:
                stores[m] = GridStore(f"{tag}.{m}.features", frows, fcols, em.dim)
            stores["present"] = GridStore(f"{tag}.present", out_h, out_w, len(srcs), np.uint8)

            def owned(b: W.Block) -> tuple[tuple[int, int], tuple[int, int]]:
                return axes[0].owned(b.row0, b.row0 + b.rows), axes[1].owned(b.col0, b.col0 + b.cols)

            def encode_block(b: W.Block) -> W.Block:
                (ra, rb), (ca, cb) = owned(b)
                r0, nr = axes[0].read_window(ra, rb, halo)
                c0, nc = axes[1].read_window(ca, cb, halo)
                return dataclasses.replace(b, read_row0=r0, read_col0=c0, read_rows=nr, read_cols=nc)

            blocks = [encode_block(b) for b in W.iter_blocks(grid.height, grid.width, stride, block, halo, em.stride)]
            after = _following(blocks)
            reads = _Prefetcher(pool if req.prefetch else None, blocks,
                                lambda b, bufs=None: _read_block(readers, grid, b, stride, em.prepare, bufs, True,
                                                                 after.get(b.index)),
                                lambda b: _block_buffers(readers, b, True))
            ctx = halo // em.stride
            for blk, data in reads:
                check()
                (ra, rb), (ca, cb) = owned(blk)
                stores["present"].write(blk.row0, blk.col0, np.stack([d.present for d in data], -1).astype(np.uint8))
                with retained_heap():  # one block's tensors reuse each other's memory, given back after
                    fmaps = _encode_block(em, data, lambda: reads.read_ahead(release_freed))
                reads.read_ahead()
                for m, f in fmaps.items():
                    core = (f[:, ctx: ctx + rb - ra, ctx: ctx + cb - ca].permute(1, 2, 0) if f is not None
                            else em.blank_features(m).expand(rb - ra, cb - ca, -1))
                    stores[m].write(ra - origin[0], ca - origin[1], core.cpu().numpy())
                advance()
            # pass 2: pool the stored features over each output cell's window, apply the head
            mods = list(srcs)
            for blk in W.iter_blocks(grid.height, grid.width, stride, block, halo, em.stride):
                check()
                pres = stores["present"].read(blk.row0, blk.col0, blk.rows, blk.cols).astype(bool)
                present = {m: pres[..., k] for k, m in enumerate(mods)}
                feats = {m: _pool_from_store(em, stores[m], axes, origin, blk, stride) for m in mods} \
                    if pres.any() else {}
                finish_block(blk, *_head_outputs(em, feats, present, blk))
        else:
            blocks = list(W.iter_blocks(grid.height, grid.width, stride, block, halo, em.stride))
            after = _following(blocks)
            reads = _Prefetcher(pool if req.prefetch else None, blocks,
                                lambda b, bufs=None: _read_block(readers, grid, b, stride, None, bufs,
                                                                 then=after.get(b.index)),
                                lambda b: _block_buffers(readers, b, False))
            for blk, data in reads:
                check()
                reads.read_ahead()
                present = {d.modality: d.present for d in data}
                with retained_heap():
                    feats = _sliding_block(em, data, blk, stride, req.batch_size)
                finish_block(blk, *_head_outputs(em, feats, present, blk))

        if want_clusters:
            if len(sample) < req.clusters:
                raise ValueError(f"only {len(sample)} valid output cells: too few for {req.clusters} clusters "
                                 f"(use a smaller stride or fewer clusters)")
            from sklearn.cluster import MiniBatchKMeans

            km = MiniBatchKMeans(n_clusters=req.clusters, random_state=req.seed, n_init=3,
                                 batch_size=min(4096, len(sample))).fit(sample)
            colors = [CLUSTER_COLORS[i % len(CLUSTER_COLORS)] for i in range(req.clusters)]
            cl = OutputRaster(req.outputs["clusters"], "clusters", **specs["clusters"], colors=colors,
                              tags={**tags, "k": str(req.clusters), "fitted_on": str(len(sample))}, **common)
            outs["clusters"] = cl
            for blk in W.iter_blocks(grid.height, grid.width, stride, block, halo, em.stride):
                check()
                e = emb_out.read(blk.row0, blk.col0, blk.rows, blk.cols)
                ok = np.isfinite(e).all(0)
                lab = np.full((blk.rows, blk.cols), 255, np.uint8)
                if ok.any():
                    lab[ok] = km.predict(e[:, ok].T.astype(np.float32)).astype(np.uint8)
                cl.write(lab[None], blk.row0, blk.col0)
                advance()
        check()
        for o in outs.values():
            o.finish()
        written = {k: o.commit() for k, o in outs.items()}
    except BaseException:
        for o in outs.values():
            o.abort()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # no read may be in flight when the files close
        if tmp_emb is not None:
            tmp_emb.abort()
        for st in stores.values():
            st.close()
        for r in readers:
            r.reader.close()
        for s in srcs.values():
            s.close()
        for f in staged_files:
            remove_staged(f)
    progress(1.0)
    return SceneResult(written, grid.crs.to_string(), out_w, out_h, mode, warns, time.perf_counter() - t0,
                       stride, nblocks, staged)


def _write_block(outs: dict[str, OutputRaster], blk: W.Block, probs, emb, valid, K: int, pdtype: str) -> None:
    shape = (blk.rows, blk.cols)
    for kind, o in outs.items():
        if kind == "clusters":
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
            bits = (probs >= 0.5).astype(np.uint64) << np.arange(K, dtype=np.uint64)[:, None, None]
            a = bits.sum(0).astype(o.ds.dtypes[0])[None]
            a[:, inv] = o.ds.nodata
        elif kind == "uncertainty":
            a = _binary_entropy(probs).astype(np.float32)[None]
            a[:, inv] = np.nan
        elif kind == "embeddings":
            a = emb.astype(np.float32)
            a[:, inv] = np.nan
        else:  # pragma: no cover
            continue
        o.write(a, blk.row0, blk.col0)
