"""The MoSAiC objective: one weighted contrastive loss serves NT-Xent, InfoNCE and SupCon.

For anchor i and candidates j, ``p_ij = softmax_j(z_i . c_j / tau)`` over the candidates
that are not excluded (the anchor itself), and

    L_i = - sum_j w_ij log p_ij / sum_j w_ij,     anchors with sum_j w_ij = 0 skipped.

* NT-Xent (SimCLR): candidates = both views, w_ij = 1 for the other view of the same patch.
* Inter-modal InfoNCE (CLIP): candidates = the other modality, w_ij = 1 for the same patch;
  symmetric (S2->S1 and S1->S2 averaged).
* Multi-label SupCon: candidates = both views of both modalities of the labelled patches,
  w_ij = Jaccard(y_i, y_j) = |y_i AND y_j| / |y_i OR y_j| (MulSupCon-style weighting; with
  one-hot labels this is exactly single-label SupCon of Khosla et al.).

Anchors are the local batch; candidates are gathered from every rank with gradients;
losses are normalised by the global number of valid anchors (see core.distributed).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .distributed import gather_with_grad, global_sum, rank, world_size


def _wide(x: torch.Tensor) -> torch.Tensor:
    """float64 stays float64 (exact reference checks); everything else computes in float32."""
    return x if x.dtype == torch.float64 else x.float()


def _same_shape(name: str, *xs: torch.Tensor) -> None:
    if any(x.ndim != 2 for x in xs) or len({tuple(x.shape) for x in xs}) != 1:
        raise ValueError(f"{name}: embeddings must be [n, d] of one shape, got {[tuple(x.shape) for x in xs]}")


def jaccard(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Jaccard similarity [n, m] between multi-hot rows of ``a`` [n, C] and ``b`` [m, C]; 0 where both are empty."""
    a, b = _wide(a), _wide(b)
    inter = a @ b.T
    union = a.sum(1, keepdim=True) + b.sum(1)[None, :] - inter
    return torch.where(union > 0, inter / union.clamp_min(1e-12), torch.zeros_like(inter))


def weighted_contrastive(
    anchors: torch.Tensor,
    candidates: torch.Tensor,
    weights: torch.Tensor,
    tau: float,
    exclude: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum over valid anchors of the weighted contrastive loss, and their count.

    Args:
        anchors: [n, d] L2-normalised.
        candidates: [m, d] L2-normalised.
        weights: [n, m] non-negative positive weights (0 = negative).
        tau: temperature.
        exclude: [n, m] bool, pairs removed from the softmax (self-contrast).
    Returns:
        (sum of per-anchor losses, number of anchors with a positive).
    """
    if anchors.ndim != 2 or candidates.ndim != 2 or weights.shape != (anchors.shape[0], candidates.shape[0]):
        raise ValueError(
            f"shapes do not fit: anchors {tuple(anchors.shape)}, candidates {tuple(candidates.shape)}, "
            f"weights {tuple(weights.shape)}"
        )
    logits = _wide(anchors @ candidates.T) / tau
    if exclude is not None:
        logits = logits.masked_fill(exclude, float("-inf"))
        weights = weights.masked_fill(exclude, 0.0)
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    log_prob = torch.where(weights > 0, log_prob, torch.zeros_like(log_prob))  # no -inf * 0
    wsum = weights.sum(1)
    valid = wsum > 0
    per_anchor = -(weights * log_prob).sum(1) / wsum.clamp_min(1e-12)
    return per_anchor[valid].sum(), valid.sum()


def _normalised(total: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """Local loss sum -> share of the global mean, so DDP's average gives the global mean."""
    n = global_sum(count.float())
    return total * world_size() / n.clamp_min(1.0)


def _local(ok: torch.Tensor | None, n: int, like: torch.Tensor) -> torch.Tensor:
    """[n] bool: which local patches have the modality (all, when ``ok`` is None)."""
    return torch.ones(n, dtype=torch.bool, device=like.device) if ok is None else ok.to(like.device).bool()


def _present(ok: torch.Tensor | None, n: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(local [n], gathered over ranks [N]) bool: which patches have the modality."""
    local = _local(ok, n, like)
    return local, gather_with_grad(local.float()).bool()


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, tau: float = 0.1, present: torch.Tensor | None = None) -> torch.Tensor:
    """SimCLR NT-Xent between two views [n, d] of the same local patches; ``present`` [n]: the
    patches that have this modality (the others are neither anchors nor candidates)."""
    _same_shape("nt_xent", z1, z2)
    n = z1.shape[0]
    cand = torch.cat([gather_with_grad(z1), gather_with_grad(z2)])
    big = cand.shape[0] // 2
    off = rank() * n
    anchors = torch.cat([z1, z2])
    idx = torch.arange(n, device=z1.device) + off
    own = torch.cat([idx, idx + big])          # column of each anchor itself
    other = torch.cat([idx + big, idx])        # column of its other view
    rows = torch.arange(2 * n, device=z1.device)
    weights = torch.zeros(2 * n, 2 * big, device=z1.device, dtype=_wide(z1).dtype)
    weights[rows, other] = 1.0
    exclude = torch.zeros_like(weights, dtype=torch.bool)
    exclude[rows, own] = True
    ok, g_ok = _present(present, n, z1)
    c_ok = torch.cat([g_ok, g_ok])
    weights = weights * torch.cat([ok, ok])[:, None] * c_ok[None, :]
    exclude |= ~c_ok[None, :]
    total, count = weighted_contrastive(anchors, cand, weights, tau, exclude)
    return _normalised(total, count)


def clip_info_nce(za: torch.Tensor, zb: torch.Tensor, tau: float = 0.1, present: torch.Tensor | None = None
                  ) -> torch.Tensor:
    """Symmetric InfoNCE between two modalities [n, d] of the same local patches; ``present``
    [n]: the patches that have both (the others are neither anchors nor candidates)."""
    _same_shape("clip_info_nce", za, zb)
    n = za.shape[0]
    ga, gb = gather_with_grad(za), gather_with_grad(zb)
    weights = torch.zeros(n, ga.shape[0], device=za.device, dtype=_wide(za).dtype)
    weights[torch.arange(n), torch.arange(n) + rank() * n] = 1.0
    ok, g_ok = _present(present, n, za)
    weights = weights * ok[:, None] * g_ok[None, :]
    exclude = ~g_ok[None, :].expand(n, -1)
    ta, ca = weighted_contrastive(za, gb, weights, tau, exclude)
    tb, cb = weighted_contrastive(zb, ga, weights, tau, exclude)
    return 0.5 * (_normalised(ta, ca) + _normalised(tb, cb))


def multilabel_supcon(
    views: list[torch.Tensor], labels: torch.Tensor, labelled: torch.Tensor, tau: float = 0.1,
    view_present: list[torch.Tensor] | None = None,
) -> torch.Tensor:
    """Jaccard-weighted SupCon over every view/modality embedding [n, d] of the labelled patches.

    Args:
        views: embeddings of the same n local patches (e.g. [s2 view a, s2 view b, s1 view a, s1 view b]),
            so positives arise within and across modalities.
        labels: [n, C] multi-hot.
        labelled: [n] bool; unlabelled patches are neither anchors nor candidates.
        view_present: per view, [n] bool: the patches that have that view's modality (the
            others' embeddings of it are neither anchors nor candidates); default all.
    """
    _same_shape("multilabel_supcon", *views)
    v = len(views)
    n = labels.shape[0]
    if views[0].shape[0] != n or labelled.shape != (n,):
        raise ValueError(f"multilabel_supcon: {views[0].shape[0]} embeddings, {n} label rows and "
                         f"{tuple(labelled.shape)} labelled flags must agree")
    anchors = torch.cat(views)
    labels = labels.to(_wide(views[0]).dtype)
    a_lab = labels.repeat(v, 1)
    has = [_present(None if view_present is None else view_present[k], n, labels) for k in range(v)]
    a_ok = labelled.bool().repeat(v) & torch.cat([h[0] for h in has])
    cand = torch.cat([gather_with_grad(x) for x in views])
    g_lab = gather_with_grad(labels).repeat(v, 1)
    g_ok = gather_with_grad(labelled.float()).bool().repeat(v) & torch.cat([h[1] for h in has])
    big = g_lab.shape[0] // v
    weights = jaccard(a_lab, g_lab) * a_ok[:, None] * g_ok[None, :]
    own = (torch.arange(n, device=labels.device) + rank() * n).repeat(v) + torch.arange(v, device=labels.device).repeat_interleave(n) * big
    exclude = ~g_ok[None, :].expand(v * n, -1).clone()
    exclude[torch.arange(v * n), own] = True
    total, count = weighted_contrastive(anchors, cand, weights, tau, exclude)
    return _normalised(total, count)


def masked_bce(logits: torch.Tensor, labels: torch.Tensor, labelled: torch.Tensor) -> torch.Tensor:
    """BCE-with-logits averaged over the labelled patches of the global batch."""
    if logits.shape != labels.shape or labelled.shape != logits.shape[:1]:
        raise ValueError(f"masked_bce: logits {tuple(logits.shape)}, labels {tuple(labels.shape)} and "
                         f"labelled {tuple(labelled.shape)} must agree")
    logits = _wide(logits)
    per = F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), reduction="none").mean(1)
    m = labelled.to(logits.dtype)
    return _normalised((per * m).sum(), m.sum())


@dataclass
class LossWeights:
    """Weight of each term; a baseline is the same objective with some weights at zero."""

    intra: float = 1.0
    inter: float = 1.0
    supcon: float = 1.0
    bce: float = 1.0

    @classmethod
    def preset(cls, name: str) -> "LossWeights":
        presets = {
            "mosaic": cls(1.0, 1.0, 1.0, 1.0),
            "supervised": cls(0.0, 0.0, 0.0, 1.0),
            "simclr": cls(1.0, 0.0, 0.0, 0.0),
            "clip": cls(0.0, 1.0, 0.0, 0.0),
            "contrastive": cls(1.0, 1.0, 0.0, 0.0),
        }
        if name not in presets:
            raise ValueError(f"unknown objective {name!r}; choose from {sorted(presets)}")
        return presets[name]


def mosaic_loss(
    z: dict[str, list[torch.Tensor]],
    logits: list[torch.Tensor],
    labels: torch.Tensor,
    labelled: torch.Tensor,
    w: LossWeights,
    tau: float = 0.1,
    has: dict[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """All terms and their weighted total.

    Args:
        z: per modality ('s2', 's1'), the L2-normalised projections of the two views.
        logits: fused classifier logits of each view.
        has: per modality, [n] bool: the patches that have it (default: all). An optical-only
            scene window feeds the optical intra-modal term and nothing that needs SAR.
    """
    dev = labels.device
    out: dict[str, torch.Tensor] = {}
    zero = torch.zeros((), device=dev)
    mods = [m for m in ("s2", "s1") if m in z]
    has = {m: (has or {}).get(m) for m in mods}
    out["intra"] = sum((nt_xent(z[m][0], z[m][1], tau, has[m]) for m in mods), zero) / max(len(mods), 1) \
        if w.intra else zero
    if w.inter and len(mods) == 2:
        both = None if has["s2"] is None and has["s1"] is None else \
            _local(has["s2"], labels.shape[0], labels) & _local(has["s1"], labels.shape[0], labels)
        out["inter"] = 0.5 * sum(clip_info_nce(z["s2"][k], z["s1"][k], tau, both) for k in range(2))
    else:
        out["inter"] = zero
    views = [t for m in mods for t in z[m]]
    present = [has[m] for m in mods for _ in z[m]]
    out["supcon"] = multilabel_supcon(views, labels, labelled, tau, None if all(p is None for p in present)
                                      else present) if w.supcon else zero
    out["bce"] = sum(masked_bce(lg, labels, labelled) for lg in logits) / len(logits) if w.bce else zero
    out["total"] = w.intra * out["intra"] + w.inter * out["inter"] + w.supcon * out["supcon"] + w.bce * out["bce"]
    return out
