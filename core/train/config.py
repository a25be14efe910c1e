"""Training configuration: one dataclass serves pretraining, joint training and fine-tuning."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..losses import LossWeights


@dataclass
class TrainConfig:
    """Everything a run depends on; saved in checkpoints and model cards.

    ``objective`` picks the loss weights (mosaic, supervised, simclr, clip, contrastive);
    ``weights`` overrides single terms. ``train_parts``: 'all', 'head' (encoders frozen),
    or 'head+N' (the head and the last N encoder stages).
    """

    data: str = ""
    out: str = "runs/mosaic"
    model: str = "small"
    objective: str = "mosaic"
    weights: dict[str, float] = field(default_factory=dict)
    tau: float = 0.1
    label_fraction: float = 1.0
    splits: tuple[str, ...] = ("train",)
    modalities: tuple[str, ...] = ("s2", "s1")
    epochs: int = 30
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_epochs: int = 2
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    modality_dropout: float = 0.2
    augment: bool = True
    init: str | None = None
    pretrained_s2: str | None = None
    pretrained_s1: str | None = None
    train_parts: str = "all"
    resume: bool = False
    batchnorm: str = "global"
    threads: int | None = None
    workers: int = 0
    progress: bool = True

    def loss_weights(self) -> LossWeights:
        w = LossWeights.preset(self.objective)
        for k, v in self.weights.items():
            if not hasattr(w, k):
                raise ValueError(f"unknown loss term {k!r}; terms are intra, inter, supcon, bce")
            setattr(w, k, float(v))
        return w

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
