"""The model as the engine runs it: BatchNorm folded into the convolutions, fused pointwise
operations and strip-wise first stages on the CPU, autocast on a GPU; the window head applied
to pooled features. ``load_engine_model`` builds it from a model file."""
from __future__ import annotations

import copy
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..eval.thresholds import card_thresholds
from ..io.model_file import load_model
from ..models.mosaic import MosaicModel
from ..models.resnet import BasicBlock, Bottleneck
from . import windows as W
from .fused import fuse_pointwise
from .strips import Input, strip_encoder


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
        # per-class decision thresholds of the multi-hot output (None: 0.5 for every class)
        self.thresholds = card_thresholds(card, self.classes)
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
        self.row_inputs = device.type == "cpu" and not compile  # StripEncoders take RowSources
        # feature cells per axis the encoders give on one training patch (8 for 120 px at stride 16)
        with torch.inference_mode():
            enc0 = next(iter(model.encoders.values())).eval()
            self.patch_cells = int(enc0(torch.zeros(1, enc0.in_channels, self.patch, self.patch)).shape[-1])
        # The encoders are prepared on a thread of their own while the run plans and reads its
        # first block (a small scene's start-up: benchmarks/startup.py); the first encode waits.
        pool = ThreadPoolExecutor(1, thread_name_prefix="mosaic-model")
        self._prepared: Future = pool.submit(_prepare_encoders, model, device, compile)
        pool.shutdown(wait=False)
        self.head_w = {m: model.head.linear[m].weight.detach().to(device) for m in model.head.linear}
        self.head_b = model.head.bias.detach().to(device)
        self.autocast = device.type == "cuda"
        self._blank: dict[str, torch.Tensor] = {}
        # the per-pixel head of a model fine-tuned from polygons (None: the model has none)
        self.pixel_head = model.pixel_head.to(device).eval() if model.pixel_head is not None else None
        self.pixel_classes = list(model.cfg.pixel_classes)
        self.pixel_modalities = list(model.cfg.pixel_modalities)
        self.pixel_levels = model.cfg.pixel_levels
        self.pixel_colors = [c.get("color", "#808080") for c in card.get("pixel_classes", [])] or None

    @property
    def encoders(self) -> dict[str, nn.Module]:
        """Per modality, the encoder as the engine runs it (waits for its preparation)."""
        return self._prepared.result()[0]

    @property
    def level_encoders(self) -> dict[str, nn.Module]:
        """The same encoders, not compiled: they give every stage's output."""
        return self._prepared.result()[1]

    @property
    def fused(self) -> dict[str, bool]:
        """Per encoder: convolution, sum and ReLU run as one operation (``fused.py``)."""
        return self._prepared.result()[2]

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
    def encode_levels(self, m: str, x: Input, n: int = 4) -> list[torch.Tensor]:
        """As ``encode``, but the first ``n`` stages' outputs: [B, C_L, H/s, W/s] (float32) for
        s = 2, 4, 8, 16 (the small model), the maps the pixel head reads."""
        enc = self.level_encoders[m]
        if not isinstance(x, torch.Tensor):
            if self.row_inputs:
                return enc.forward_levels(x, n)
            x = x.rows(0, x.shape[2])
        x = self.prepare(x)
        if self.autocast:
            with torch.autocast("cuda", dtype=torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16):
                return [y.float() for y in enc.forward_levels(x, n)]
        return enc.forward_levels(x, n)

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


def _prepare_encoders(model: MosaicModel, device: torch.device, compile: bool
                      ) -> tuple[dict[str, nn.Module], dict[str, nn.Module], dict[str, bool]]:
    """(encoders, level encoders, fused) of ``EngineModel``: BatchNorm folded, fused pointwise
    operations and strips on the CPU; ``model`` is left as it is."""
    encoders, levels, fused = {}, {}, {}
    for m, enc in model.encoders.items():
        e = fold_batchnorm(enc).to(device)
        if device.type == "cpu":
            e, fused[m] = fuse_pointwise(e)
            # stem + first stage strip by strip: same map, a third of the activation memory
            e = strip_encoder(e.to(memory_format=torch.channels_last))
        levels[m] = e
        encoders[m] = torch.compile(e, dynamic=True) if compile else e
    return encoders, levels, fused


def head_outputs(em: EngineModel, feats: dict[str, torch.Tensor], present: dict[str, np.ndarray], blk: W.Block):
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


def load_engine_model(path: str, device: torch.device, compile: bool = False) -> EngineModel:
    """The model file ``path`` (NAME.safetensors + NAME.json) prepared for ``device``."""
    model, card = load_model(path, "cpu")
    return EngineModel(model, card, device, compile=compile)
