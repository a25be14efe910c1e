"""The dual-stream MoSAiC model: one encoder per modality, projection heads, a fusion head.

Either modality may be missing (S2 only under no SAR, S1 only under clouds): the fusion
head averages per-modality linear logits over the modalities present, so each stream
alone is a valid classifier and both together are their average. Training drops one
modality per sample at random (``modality_dropout``) so the head is used to both cases.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data.bands import BEN19_CLASSES, S1_BANDS, S2_BANDS
from .pixel_head import PixelHead
from ..distributed import is_distributed
from .resnet import ResNetEncoder

MODALITIES = ("s2", "s1")


@dataclass
class ModelConfig:
    """Architecture; stored in the model card so a file rebuilds its own model."""

    depth: int = 18
    width: int = 16
    stem_stride: int = 2
    proj_dim: int = 128
    proj_hidden: int = 256
    classes: tuple[str, ...] = BEN19_CLASSES
    s2_bands: tuple[str, ...] = S2_BANDS
    s1_bands: tuple[str, ...] = S1_BANDS
    modalities: tuple[str, ...] = MODALITIES
    # the per-pixel head (``pixel_head.PixelHead``), added by fine-tuning from polygons: its
    # classes (empty: none), the modalities it was trained on, its hidden units and how many
    # encoder stages it reads besides the bands (1: the 20 m stage; measured in docs/fewshot/maps.md)
    pixel_classes: tuple[str, ...] = ()
    pixel_modalities: tuple[str, ...] = ()
    pixel_hidden: int = 32
    pixel_levels: int = 1

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "ModelConfig":
        """'small' trains on 2 CPU cores; 'resnet50' is the paper-scale GPU model."""
        presets = {
            "small": dict(depth=18, width=16, stem_stride=2),
            "resnet18": dict(depth=18, width=64, stem_stride=4),
            "resnet50": dict(depth=50, width=64, stem_stride=4, proj_hidden=2048),
        }
        if name not in presets:
            raise ValueError(f"unknown model preset {name!r}; choose from {sorted(presets)}")
        return cls(**{**presets[name], **overrides})

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"model config has unknown field(s) {sorted(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


class ProjectionHead(nn.Sequential):
    """2-layer MLP to the contrastive space (SimCLR)."""

    def __init__(self, cin: int, hidden: int, out: int) -> None:
        super().__init__(nn.Linear(cin, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out))


class FusionHead(nn.Module):
    """Multi-label logits = mean over present modalities of a per-modality linear map, + bias."""

    def __init__(self, dims: dict[str, int], num_classes: int) -> None:
        super().__init__()
        self.linear = nn.ModuleDict({m: nn.Linear(d, num_classes, bias=False) for m, d in dims.items()})
        self.bias = nn.Parameter(torch.zeros(num_classes))

    def forward(self, feats: dict[str, torch.Tensor], present: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """``present[m]``: [B] float mask of samples that have modality m (default: all)."""
        num = 0.0
        den = 0.0
        for m, f in feats.items():
            mask = present[m] if present is not None else torch.ones(f.shape[0], device=f.device)
            num = num + self.linear[m](f) * mask[:, None]
            den = den + mask[:, None]
        if isinstance(den, float):
            raise ValueError("no modality given: pass an optical (s2) and/or a SAR (s1) input")
        return num / den.clamp_min(1.0) + self.bias


class MosaicModel(nn.Module):
    """Optical + SAR encoders, projection heads and the fusion classifier."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        chans = {"s2": len(cfg.s2_bands), "s1": len(cfg.s1_bands)}
        self.encoders = nn.ModuleDict(
            {m: ResNetEncoder(chans[m], cfg.depth, cfg.width, cfg.stem_stride) for m in cfg.modalities}
        )
        dims = {m: e.out_channels for m, e in self.encoders.items()}
        self.projectors = nn.ModuleDict({m: ProjectionHead(d, cfg.proj_hidden, cfg.proj_dim) for m, d in dims.items()})
        self.head = FusionHead(dims, len(cfg.classes))
        self.pixel_head = self.make_pixel_head(cfg.pixel_classes, cfg.pixel_modalities, cfg.pixel_hidden,
                                               cfg.pixel_levels) if cfg.pixel_classes else None

    def make_pixel_head(self, classes: tuple[str, ...], modalities: tuple[str, ...], hidden: int,
                        levels: int) -> PixelHead:
        """A new pixel head on this model's encoders: per modality the bands, then the first
        ``levels`` stage outputs."""
        bad = [m for m in modalities if m not in self.encoders]
        if not modalities or bad:
            raise ValueError(f"a pixel head needs modalities among {list(self.encoders)}, got {list(modalities)}")
        if not 1 <= levels <= 4:
            raise ValueError(f"a pixel head reads 1 to 4 encoder stages, got {levels}")
        enc = self.encoders[modalities[0]]
        return PixelHead(self.pixel_level_dims(modalities, levels), enc.level_strides[:levels], hidden, len(classes))

    def pixel_level_dims(self, modalities: tuple[str, ...], levels: int) -> dict[str, tuple[int, ...]]:
        """Per modality, the channels of a pixel's hypercolumn: bands, then the first ``levels`` stages."""
        chans = {"s2": len(self.cfg.s2_bands), "s1": len(self.cfg.s1_bands)}
        return {m: (chans[m], *self.encoders[m].level_channels[:levels]) for m in modalities}

    def attach_pixel_head(self, head: PixelHead, classes: tuple[str, ...], modalities: tuple[str, ...],
                          hidden: int, levels: int) -> None:
        """Make ``head`` this model's pixel head (its architecture recorded in ``cfg``)."""
        want = self.pixel_level_dims(modalities, levels)
        if head.level_dims != want or head.n_classes != len(classes) or head.hidden != hidden:
            raise ValueError("the pixel head does not fit this model's encoders")
        self.cfg = ModelConfig.from_dict({**self.cfg.to_dict(), "pixel_classes": list(classes),
                                          "pixel_modalities": list(modalities), "pixel_hidden": hidden,
                                          "pixel_levels": levels})
        self.pixel_head = head

    @property
    def feature_dim(self) -> int:
        return next(iter(self.encoders.values())).out_channels

    @property
    def output_stride(self) -> int:
        return next(iter(self.encoders.values())).output_stride

    def features(self, s2: torch.Tensor | None = None, s1: torch.Tensor | None = None,
                 has: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Globally pooled encoder features per given modality, [B, feature_dim] each.

        ``has[m]`` [B] bool: the samples that have modality m (an optical-only scene window has
        no SAR). Only those go through m's encoder, so its BatchNorm statistics never see the
        placeholder input of the others, whose features are zeros."""
        given = {m: x for m, x in (("s2", s2), ("s1", s1)) if x is not None}
        if not given:
            raise ValueError("no modality given: pass an optical (s2) and/or a SAR (s1) input")
        missing = [m for m in given if m not in self.encoders]
        if missing:
            raise ValueError(f"this model has no {missing[0]} encoder (it takes {list(self.encoders)})")
        out = {}
        for m, x in given.items():
            keep = None if has is None or has.get(m) is None else has[m].to(x.device).bool()
            if keep is None or bool(keep.all()):
                out[m] = self.encoders[m](x).mean(dim=(2, 3))
            elif bool(keep.any()) or is_distributed():  # every rank runs it: BatchNorm all-reduces its statistics
                y = self.encoders[m](x[keep]).mean(dim=(2, 3))
                out[m] = y.new_zeros(x.shape[0], y.shape[1]).index_put((keep.nonzero().squeeze(1),), y)
            else:
                out[m] = x.new_zeros(x.shape[0], self.encoders[m].out_channels)
        return out

    def embedding(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        """The patch embedding for probes and clustering: L2-normalised features, concatenated in S2, S1 order."""
        return torch.cat([F.normalize(feats[m], dim=1) for m in MODALITIES if m in feats], dim=1)

    def forward(
        self,
        s2: torch.Tensor | None = None,
        s1: torch.Tensor | None = None,
        present: dict[str, torch.Tensor] | None = None,
        has: dict[str, torch.Tensor] | None = None,
    ) -> dict[str, Any]:
        """Returns ``{'feat': {m: [B,D]}, 'z': {m: [B,P]}, 'logits': [B,K]}``; ``has``: see ``features``."""
        feats = self.features(s2, s1, has)
        z = {m: F.normalize(self.projectors[m](f), dim=1) for m, f in feats.items()}
        return {"feat": feats, "z": z, "logits": self.head(feats, present)}
