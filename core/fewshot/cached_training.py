"""Head-only window fine-tuning on cached encoder features: the MoSAiC objective at a fraction of the cost.

With frozen encoders (``train_parts='head'``), every epoch of ``train.loop.train`` runs both
encoders over two fresh augmented views of every window, and only the projection heads and the
fusion classifier learn. Here each window's encoders run once per view for ``views`` augmented
views (the same augmentations, ``data.augment``), the pooled features are kept, and the epochs
draw two different cached views per window: the same four terms (intra-modal NT-Xent,
inter-modal InfoNCE, multi-label SupCon, BCE), the same modality dropout, optimiser and schedule,
on vectors instead of images. The frozen encoders are in eval mode in both (BatchNorm statistics
kept), so a cached feature is exactly what the loop would compute for that view.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from ..data.augment import AugmentConfig, augment_view, view_generator
from ..losses import LossWeights, mosaic_loss
from ..models.mosaic import MosaicModel
from ..train.schedule import cosine_lr

MODS = ("s2", "s1")


@torch.no_grad()
def cached_view_features(model: MosaicModel, images: dict[str, np.ndarray], views: int, seed: int,
                         augment: bool = True, batch: int = 32,
                         is_cancelled: Callable[[], bool] | None = None) -> dict[str, torch.Tensor]:
    """Pooled encoder features [N, views, D] per modality of ``views`` augmented views of each window
    (``images[m]``: normalised [N, C, P, P])."""
    model.eval()
    mods = [m for m in MODS if images.get(m) is not None]
    n = len(images[mods[0]])
    out = {m: torch.empty(n, views, model.feature_dim) for m in mods}
    cfg = AugmentConfig() if augment else None
    for v in range(views):
        for a in range(0, n, batch):
            if is_cancelled is not None and is_cancelled():
                raise InterruptedError("cancelled")
            idx = range(a, min(n, a + batch))
            stacks: dict[str, list[torch.Tensor]] = {m: [] for m in mods}
            for i in idx:
                item = {m: torch.from_numpy(images[m][i]) for m in mods}
                view = augment_view(item, view_generator(seed, v, i, 0), cfg) if cfg is not None else item
                for m in mods:
                    stacks[m].append(view[m])
            feats = model.features(**{m: torch.stack(stacks[m]) for m in mods})
            for m in mods:
                out[m][a: a + len(idx), v] = feats[m]
    return out


def train_heads_cached(model: MosaicModel, feats: dict[str, torch.Tensor], labels: np.ndarray, labelled: np.ndarray,
                       weights: LossWeights, epochs: int, batch: int, lr: float, weight_decay: float, tau: float,
                       seed: int, modality_dropout: float,
                       on_step: Callable[[dict[str, float]], None] | None = None) -> list[dict[str, Any]]:
    """Train ``model.projectors`` and ``model.head`` on cached view features (``cached_view_features``)
    with the MoSAiC objective; returns the per-epoch history (as ``train.loop.train``)."""
    mods = [m for m in MODS if m in feats]
    n, views = next(iter(feats.values())).shape[:2]
    if views < 2:
        raise ValueError("the contrastive terms need at least two cached views per window")
    y = torch.from_numpy(labels.astype(np.float32))
    lab = torch.from_numpy(labelled.astype(bool))
    params = [p for mod in (model.projectors, model.head) for p in mod.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=lr)
    steps_per_epoch = -(-n // batch)
    total, step = epochs * steps_per_epoch, 0
    g = torch.Generator().manual_seed(seed)
    history = []
    model.train()
    for epoch in range(epochs):
        perm = torch.randperm(n, generator=g)
        perm = torch.cat([perm, perm[: steps_per_epoch * batch - n]])  # every batch full, as the loop's sampler
        sums: dict[str, float] = {}
        for b in range(steps_per_epoch):
            idx = perm[b * batch: (b + 1) * batch]
            lr_now = cosine_lr(step, total, lr, 0)
            for grp in opt.param_groups:
                grp["lr"] = lr_now
            # two different cached views per window
            v0 = torch.randint(0, views, (len(idx),), generator=g)
            v1 = (v0 + torch.randint(1, views, (len(idx),), generator=g)) % views
            present = _modality_dropout(len(idx), mods, modality_dropout, g)
            f = {m: [feats[m][idx, v0], feats[m][idx, v1]] for m in mods}
            z = {m: [torch.nn.functional.normalize(model.projectors[m](x), dim=1) for x in f[m]] for m in mods}
            logits = [model.head({m: f[m][k] for m in mods}, present) for k in range(2)]
            terms = mosaic_loss(z, logits, y[idx], lab[idx], weights, tau)
            opt.zero_grad(set_to_none=True)
            terms["total"].backward()
            opt.step()
            step += 1
            vals = {k: float(v.detach()) for k, v in terms.items()}
            for k, v in vals.items():
                sums[k] = sums.get(k, 0.0) + v
            if on_step is not None:
                on_step({"step": step, "epoch": epoch, "lr": lr_now, **vals})
        history.append({"epoch": epoch + 1, **{k: v / steps_per_epoch for k, v in sums.items()}})
    model.eval()
    for p in model.parameters():
        p.requires_grad_(True)
    return history


def _modality_dropout(n: int, mods: list[str], p: float, g: torch.Generator) -> dict[str, torch.Tensor]:
    """Per window, which modalities the fused head sees: with probability ``p`` one of two is hidden."""
    present = {m: torch.ones(n) for m in mods}
    if len(mods) == 2 and p > 0:
        drop = torch.rand(n, generator=g) < p
        which = torch.randint(0, 2, (n,), generator=g)
        present[mods[0]][drop & (which == 0)] = 0.0
        present[mods[1]][drop & (which == 1)] = 0.0
    return present
