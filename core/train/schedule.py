"""Learning-rate schedule: linear warm-up then cosine decay, a pure function of the step
(so a resumed run continues on the same curve)."""
from __future__ import annotations

import math


def cosine_lr(step: int, total: int, base_lr: float, warmup: int, min_ratio: float = 0.01) -> float:
    if total <= 0:
        return base_lr
    if step < warmup:
        return base_lr * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return base_lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))
