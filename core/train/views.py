"""Turns patch samples into the two augmented views and the modality-dropout masks."""
from __future__ import annotations

import torch

from ..data.augment import AugmentConfig, augment_view, view_generator


class TwoViews(torch.utils.data.Dataset):
    """Wraps a patch dataset; item = two augmented views + which modalities the fused head sees.

    ``modality_dropout``: probability that a sample's fused classifier input loses one
    modality (S1 or S2, equally likely), so the head learns to work with either alone.
    """

    def __init__(self, base: torch.utils.data.Dataset, seed: int, modality_dropout: float = 0.2,
                 augment: AugmentConfig | None = AugmentConfig()) -> None:
        self.base, self.seed, self.modality_dropout, self.augment = base, seed, modality_dropout, augment
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        item = self.base[i]
        images = {m: item[m] for m in ("s2", "s1") if m in item}
        out = {k: v for k, v in item.items() if k not in images}
        for v in range(2):
            g = view_generator(self.seed, self.epoch, i, v)
            view = augment_view(images, g, self.augment) if self.augment is not None else dict(images)
            for m, x in view.items():
                out[f"{m}_{v}"] = x
        g = view_generator(self.seed, self.epoch, i, 99)
        drop = float(torch.rand((), generator=g)) < self.modality_dropout
        which = int(torch.randint(0, 2, (), generator=g))
        has = {m: float(item.get(f"has_{m}", 1.0)) for m in ("s2", "s1")}  # an optical-only scene window lacks s1
        if not all(has.values()):
            drop = False  # never take away the one modality it has
        out["has_s2"], out["has_s1"] = torch.tensor(has["s2"] > 0), torch.tensor(has["s1"] > 0)
        out["present_s2"] = torch.tensor(0.0 if (drop and which == 0) or not has["s2"] else 1.0)
        out["present_s1"] = torch.tensor(0.0 if (drop and which == 1) or not has["s1"] else 1.0)
        return out
