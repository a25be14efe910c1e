"""Losses of core.losses checked against slow, direct references written here with loops.

Each reference follows the formulas of the module docstring and docs/DESIGN (SimCLR NT-Xent,
symmetric CLIP InfoNCE, Jaccard-weighted multi-label SupCon, masked BCE) one anchor and one
candidate at a time, so that a vectorisation mistake (wrong mask, wrong self-exclusion,
wrong normalisation) in the implementation shows up as a value or gradient mismatch.
All in a single process (the distributed helpers are no-ops there).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mosaic.core.losses import (
    LossWeights,
    clip_info_nce,
    jaccard,
    masked_bce,
    mosaic_loss,
    multilabel_supcon,
    nt_xent,
    weighted_contrastive,
)

SEEDS = (0, 1, 2)
SIZES = ((1, 3), (2, 4), (5, 8), (8, 16))  # (n patches, embedding dim)


# --------------------------------------------------------------------------- helpers


def _unit(gen: torch.Generator, n: int, d: int) -> torch.Tensor:
    """Random L2-normalised rows in float64, requiring grad."""
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    return (x / x.norm(dim=1, keepdim=True)).requires_grad_(True)


def _tol(out: torch.Tensor) -> dict:
    """Tolerance for comparing with a float64 reference.

    1e-9 when the implementation keeps float64; if it computes in float32 (its output
    dtype tells), only float32 precision can be asked for.
    """
    if out.dtype == torch.float64:
        return {"rtol": 1e-9, "atol": 1e-9}
    return {"rtol": 1e-5, "atol": 1e-5}


def _assert_value_and_grad(got: torch.Tensor, ref: torch.Tensor, inputs: list[torch.Tensor]) -> None:
    """Same loss value and same gradient wrt every input."""
    tol = _tol(got)
    torch.testing.assert_close(got.double(), ref.double(), **tol)
    g_got = _grads(got, inputs)
    g_ref = _grads(ref, inputs)
    for x, a, b in zip(inputs, g_got, g_ref):
        a = torch.zeros_like(x) if a is None else a
        b = torch.zeros_like(x) if b is None else b
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a.double(), b.double(), **tol)


def _grads(out: torch.Tensor, inputs: list[torch.Tensor]) -> tuple:
    """d out / d inputs; None for inputs it does not depend on (also when it is a constant)."""
    if not out.requires_grad:
        return (None,) * len(inputs)
    return torch.autograd.grad(out, inputs, allow_unused=True)


def _lse(values: list[torch.Tensor]) -> torch.Tensor:
    return torch.logsumexp(torch.stack(values), dim=0)


def _jaccard_py(a: list[int] | torch.Tensor, b: list[int] | torch.Tensor) -> float:
    """|A and B| / |A or B| on Python sets; 0 for two empty sets."""
    sa = {k for k, v in enumerate(a) if v}
    sb = {k for k, v in enumerate(b) if v}
    union = sa | sb
    return len(sa & sb) / len(union) if union else 0.0


# --------------------------------------------------------------------------- references


def ref_nt_xent(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> torch.Tensor:
    """SimCLR NT-Xent: 2N anchors, each with its other view as positive among 2N-1 candidates."""
    n = z1.shape[0]
    z = [z1[i] for i in range(n)] + [z2[i] for i in range(n)]
    losses = []
    for i in range(2 * n):
        pos = (i + n) % (2 * n)
        logits = [torch.dot(z[i], z[j]) / tau for j in range(2 * n) if j != i]
        losses.append(-(torch.dot(z[i], z[pos]) / tau - _lse(logits)))
    return sum(losses) / len(losses)


def ref_clip(za: torch.Tensor, zb: torch.Tensor, tau: float) -> torch.Tensor:
    """Symmetric InfoNCE: a->b cross-entropy with the same patch as target, averaged with b->a."""
    n = za.shape[0]

    def one_way(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        total = 0.0
        for i in range(n):
            logits = [torch.dot(x[i], y[j]) / tau for j in range(n)]
            total = total - (logits[i] - _lse(logits))
        return total / n

    return 0.5 * (one_way(za, zb) + one_way(zb, za))


def ref_supcon(views: list[torch.Tensor], labels: torch.Tensor, labelled: torch.Tensor, tau: float) -> torch.Tensor:
    """Jaccard-weighted SupCon: items are (view, labelled patch); for anchor i and every other item j,
    w_ij = Jaccard(y_i, y_j), p_ij = softmax over j != i; L_i = -sum_j w_ij log p_ij / sum_j w_ij,
    averaged over anchors with sum_j w_ij > 0 (0 if none)."""
    n = labels.shape[0]
    items = [(v, p) for v in range(len(views)) for p in range(n) if bool(labelled[p])]
    losses = []
    for i, (vi, pi) in enumerate(items):
        zi = views[vi][pi]
        others = [(j, vj, pj) for j, (vj, pj) in enumerate(items) if j != i]
        w = [_jaccard_py(labels[pi].tolist(), labels[pj].tolist()) for _, _, pj in others]
        if sum(w) == 0:
            continue
        logits = [torch.dot(zi, views[vj][pj]) / tau for _, vj, pj in others]
        lse = _lse(logits)
        num = sum(wj * (lj - lse) for wj, lj in zip(w, logits) if wj > 0)
        losses.append(-num / sum(w))
    if not losses:
        return torch.zeros((), dtype=torch.float64)
    return sum(losses) / len(losses)


def ref_single_label_supcon(views: list[torch.Tensor], classes: list[int], tau: float) -> torch.Tensor:
    """Khosla et al. (2020) SupCon 'L_out': -1/|P(i)| sum_{p in P(i)} log softmax_{a != i}(z_i.z_a/tau)_p,
    vectorised with masks (a different route from the loop reference)."""
    z = torch.cat(views)
    y = torch.tensor(classes * len(views))
    m = z.shape[0]
    eye = torch.eye(m, dtype=torch.bool)
    logits = (z @ z.T / tau).masked_fill(eye, float("-inf"))
    log_prob = torch.log_softmax(logits, dim=1)
    pos = (y[:, None] == y[None, :]) & ~eye
    n_pos = pos.sum(1)
    keep = n_pos > 0
    per = -torch.where(pos, log_prob, torch.zeros_like(log_prob)).sum(1) / n_pos.clamp_min(1)
    return per[keep].mean()


def ref_masked_bce(logits: torch.Tensor, labels: torch.Tensor, labelled: torch.Tensor) -> torch.Tensor:
    """Mean over labelled patches of the mean over classes of -(y log s(x) + (1-y) log(1-s(x)))."""
    rows = []
    for i in range(logits.shape[0]):
        if not bool(labelled[i]):
            continue
        terms = []
        for k in range(logits.shape[1]):
            x, y = logits[i, k], float(labels[i, k])
            s = 1.0 / (1.0 + torch.exp(-x))
            terms.append(-(y * torch.log(s) + (1 - y) * torch.log(1 - s)))
        rows.append(sum(terms) / len(terms))
    if not rows:
        return torch.zeros((), dtype=torch.float64)
    return sum(rows) / len(rows)


def _random_labels(gen: torch.Generator, n: int, c: int, p: float = 0.35) -> tuple[torch.Tensor, torch.Tensor]:
    """Multi-hot labels (some rows empty) and a labelled mask with some patches unlabelled."""
    labels = (torch.rand(n, c, generator=gen) < p).float()
    labelled = torch.rand(n, generator=gen) < 0.75
    return labels, labelled


# --------------------------------------------------------------------------- value and gradient vs references


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n,d", SIZES)
@pytest.mark.parametrize("tau", (0.1, 0.5))
def test_nt_xent_matches_reference(seed: int, n: int, d: int, tau: float) -> None:
    """NT-Xent: each of 2N anchors against its other view among the 2N-1 other embeddings."""
    g = torch.Generator().manual_seed(seed)
    z1, z2 = _unit(g, n, d), _unit(g, n, d)
    _assert_value_and_grad(nt_xent(z1, z2, tau), ref_nt_xent(z1, z2, tau), [z1, z2])


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n,d", SIZES)
@pytest.mark.parametrize("tau", (0.1, 0.5))
def test_clip_info_nce_matches_reference(seed: int, n: int, d: int, tau: float) -> None:
    """CLIP InfoNCE: both directions, same patch is the target, averaged."""
    g = torch.Generator().manual_seed(100 + seed)
    za, zb = _unit(g, n, d), _unit(g, n, d)
    _assert_value_and_grad(clip_info_nce(za, zb, tau), ref_clip(za, zb, tau), [za, zb])


def test_clip_info_nce_is_symmetric() -> None:
    """Swapping the modalities must not change the symmetric loss."""
    g = torch.Generator().manual_seed(7)
    za, zb = _unit(g, 6, 5), _unit(g, 6, 5)
    torch.testing.assert_close(clip_info_nce(za, zb, 0.2), clip_info_nce(zb, za, 0.2))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n_views", (1, 2, 4))
@pytest.mark.parametrize("n,d,c", ((3, 4, 3), (6, 8, 5), (8, 16, 4)))
def test_multilabel_supcon_matches_reference(seed: int, n_views: int, n: int, d: int, c: int) -> None:
    """Jaccard-weighted SupCon over all views/modalities, unlabelled patches dropped entirely."""
    g = torch.Generator().manual_seed(200 + seed)
    views = [_unit(g, n, d) for _ in range(n_views)]
    labels, labelled = _random_labels(g, n, c)
    got = multilabel_supcon(views, labels, labelled, 0.1)
    _assert_value_and_grad(got, ref_supcon(views, labels, labelled, 0.1), views)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n,c", ((4, 3), (7, 5), (8, 2)))
def test_masked_bce_matches_reference(seed: int, n: int, c: int) -> None:
    """BCE-with-logits, mean over classes, mean over labelled patches only."""
    g = torch.Generator().manual_seed(300 + seed)
    logits = (3 * torch.randn(n, c, generator=g, dtype=torch.float64)).requires_grad_(True)
    labels, labelled = _random_labels(g, n, c, p=0.5)
    labelled[0] = True
    _assert_value_and_grad(masked_bce(logits, labels, labelled), ref_masked_bce(logits, labels, labelled), [logits])


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n_views", (1, 2, 4))
def test_supcon_with_one_hot_labels_is_single_label_supcon(seed: int, n_views: int) -> None:
    """With one-hot labels the Jaccard weights are 0/1, so the loss is Khosla et al.'s SupCon."""
    g = torch.Generator().manual_seed(400 + seed)
    n, c = 8, 3
    classes = torch.randint(0, c, (n,), generator=g).tolist()
    labels = torch.nn.functional.one_hot(torch.tensor(classes), c).float()
    views = [_unit(g, n, 6) for _ in range(n_views)]
    got = multilabel_supcon(views, labels, torch.ones(n, dtype=torch.bool), 0.1)
    _assert_value_and_grad(got, ref_single_label_supcon(views, classes, 0.1), views)


# --------------------------------------------------------------------------- Jaccard weights


def test_jaccard_hand_worked() -> None:
    """Small cases worked by hand, including empty label sets (weight 0, not NaN)."""
    a = torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]])
    b = torch.tensor([[0, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]])
    expected = torch.tensor(
        [
            [1 / 3, 1 / 2, 0.0],  # {0,1} vs {1,2}: 1/3; vs {0}: 1/2; vs {}: 0
            [0.0, 1.0, 0.0],  # {0} vs {1,2}: 0; vs {0}: 1
            [0.0, 0.0, 0.0],  # empty vs anything (even empty): 0
            [2 / 4, 1 / 4, 0.0],  # {0,1,2,3} vs {1,2}: 2/4; vs {0}: 1/4
        ]
    )
    got = jaccard(a, b)
    assert got.shape == (4, 3)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got.double(), expected.double(), rtol=1e-6, atol=1e-7)


def test_jaccard_symmetric_bounded_and_matches_sets() -> None:
    """J(a, b) = J(b, a)^T, values in [0, 1], 1 on the diagonal of non-empty rows; equal to set arithmetic."""
    g = torch.Generator().manual_seed(5)
    a = (torch.rand(12, 6, generator=g) < 0.3).float()
    b = (torch.rand(9, 6, generator=g) < 0.3).float()
    a[0] = 0
    ab, ba = jaccard(a, b), jaccard(b, a)
    torch.testing.assert_close(ab, ba.T)
    assert ((ab >= 0) & (ab <= 1)).all()
    aa = jaccard(a, a)
    nonempty = a.sum(1) > 0
    torch.testing.assert_close(aa.diagonal()[nonempty], torch.ones(int(nonempty.sum())))
    assert aa[0, 0] == 0
    ref = torch.tensor([[_jaccard_py(x.tolist(), y.tolist()) for y in b] for x in a])
    torch.testing.assert_close(ab.double(), ref.double(), rtol=1e-6, atol=1e-7)


def test_jaccard_accepts_bool_labels() -> None:
    """Bool multi-hot labels give the same weights as float ones."""
    a = torch.tensor([[True, False, True], [False, True, False]])
    torch.testing.assert_close(jaccard(a, a), jaccard(a.float(), a.float()))


# --------------------------------------------------------------------------- edge cases


def test_supcon_anchors_without_positive_are_skipped() -> None:
    """One view: patch 2 has a label nobody else has and patch 3 an empty label set, so only
    patches 0 and 1 are anchors; 2 and 3 still count as negatives in the softmax."""
    g = torch.Generator().manual_seed(11)
    z = _unit(g, 4, 5)
    labels = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 0, 0]]).float()
    labelled = torch.ones(4, dtype=torch.bool)
    tau = 0.1
    got = multilabel_supcon([z], labels, labelled, tau)
    s = z @ z.T / tau

    def log_p(i: int, j: int) -> torch.Tensor:
        others = [k for k in range(4) if k != i]
        return s[i, j] - torch.logsumexp(s[i, others], dim=0)

    # w_01 = w_10 = |{0}| / |{0,1}| = 1/2, single positive each -> -log p
    expected = -(log_p(0, 1) + log_p(1, 0)) / 2
    _assert_value_and_grad(got, expected, [z])


def test_supcon_no_positive_anywhere_is_zero_not_nan() -> None:
    """Disjoint labels and a single view: no anchor has a positive -> loss 0 and zero gradient."""
    g = torch.Generator().manual_seed(12)
    z = _unit(g, 3, 4)
    labels = torch.eye(3)
    loss = multilabel_supcon([z], labels, torch.ones(3, dtype=torch.bool), 0.1)
    assert torch.isfinite(loss) and loss.item() == 0.0
    (grad,) = torch.autograd.grad(loss, z, allow_unused=True)
    assert grad is None or (torch.isfinite(grad).all() and (grad == 0).all())


@pytest.mark.parametrize("n_views", (1, 2, 4))
def test_supcon_all_unlabelled_batch_is_zero_with_zero_grad(n_views: int) -> None:
    """No labelled patch: nothing to score; 0 and a finite zero gradient (no NaN from empty softmaxes)."""
    g = torch.Generator().manual_seed(13)
    views = [_unit(g, 5, 4) for _ in range(n_views)]
    labels = (torch.rand(5, 3, generator=g) < 0.5).float()
    loss = multilabel_supcon(views, labels, torch.zeros(5, dtype=torch.bool), 0.1)
    assert torch.isfinite(loss) and loss.item() == 0.0
    for grad in torch.autograd.grad(loss, views, allow_unused=True):
        assert grad is None or (torch.isfinite(grad).all() and (grad == 0).all())


def test_supcon_single_labelled_patch_single_view() -> None:
    """One labelled patch and one view: its only candidate would be itself -> skipped, 0, no NaN."""
    g = torch.Generator().manual_seed(14)
    z = _unit(g, 4, 4)
    labels = torch.ones(4, 2)
    labelled = torch.tensor([False, True, False, False])
    loss = multilabel_supcon([z], labels, labelled, 0.1)
    assert loss.item() == 0.0
    (grad,) = torch.autograd.grad(loss, z, allow_unused=True)
    assert grad is None or (torch.isfinite(grad).all() and (grad == 0).all())


def test_supcon_unlabelled_patches_neither_anchor_nor_candidate() -> None:
    """Appending unlabelled patches (with any labels and embeddings) changes neither the loss
    nor the gradient of the labelled ones, and they get no gradient themselves."""
    g = torch.Generator().manual_seed(15)
    n, extra, d, c = 5, 3, 6, 4
    labels = (torch.rand(n + extra, c, generator=g) < 0.5).float()
    labels[:n, 0] = 1  # every labelled patch has a positive
    base = [torch.randn(n + extra, d, generator=g, dtype=torch.float64) for _ in range(2)]
    base = [b / b.norm(dim=1, keepdim=True) for b in base]
    small = [b[:n].clone().requires_grad_(True) for b in base]
    big = [b.clone().requires_grad_(True) for b in base]
    labelled = torch.tensor([True] * n + [False] * extra)
    l_small = multilabel_supcon(small, labels[:n], torch.ones(n, dtype=torch.bool), 0.1)
    l_big = multilabel_supcon(big, labels, labelled, 0.1)
    tol = _tol(l_big)
    torch.testing.assert_close(l_big.double(), l_small.double(), **tol)
    g_small = torch.autograd.grad(l_small, small)
    g_big = torch.autograd.grad(l_big, big)
    for a, b in zip(g_small, g_big):
        torch.testing.assert_close(b[:n], a, **tol)
        assert (b[n:] == 0).all()


def test_masked_bce_all_unlabelled_is_zero() -> None:
    """No labelled patch: the supervised term vanishes (0, finite zero gradient)."""
    logits = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    loss = masked_bce(logits, torch.ones(4, 3), torch.zeros(4, dtype=torch.bool))
    assert torch.isfinite(loss) and loss.item() == 0.0
    (grad,) = torch.autograd.grad(loss, logits)
    assert torch.isfinite(grad).all() and (grad == 0).all()


def test_nt_xent_single_pair_is_zero() -> None:
    """N = 1: the positive is the only candidate, p = 1, loss 0."""
    g = torch.Generator().manual_seed(16)
    z1, z2 = _unit(g, 1, 4), _unit(g, 1, 4)
    assert abs(nt_xent(z1, z2, 0.1).item()) < 1e-6


def test_nt_xent_identical_views_lower_than_random() -> None:
    """Sanity on direction: aligned views give a lower loss than unrelated ones."""
    g = torch.Generator().manual_seed(17)
    z1, z2 = _unit(g, 8, 16), _unit(g, 8, 16)
    assert nt_xent(z1, z1.detach(), 0.1).item() < nt_xent(z1, z2, 0.1).item()


def _v(g: torch.Generator, n: int, d: int) -> torch.Tensor:
    return _unit(g, n, d).detach()


_G = torch.Generator().manual_seed(99)
BAD_SHAPES = {
    "weighted_contrastive weights": lambda: weighted_contrastive(_v(_G, 3, 4), _v(_G, 5, 4), torch.ones(3, 4), 0.1),
    "weighted_contrastive 1-d anchors": lambda: weighted_contrastive(torch.ones(4), _v(_G, 5, 4), torch.ones(1, 5), 0.1),
    "nt_xent 1-d": lambda: nt_xent(torch.ones(5), torch.ones(5)),
    "nt_xent 3-d": lambda: nt_xent(torch.ones(4, 5, 2), torch.ones(4, 5, 2)),
    "nt_xent views of different n": lambda: nt_xent(_v(_G, 4, 5), _v(_G, 3, 5)),
    "nt_xent views of different d": lambda: nt_xent(_v(_G, 4, 5), _v(_G, 4, 6)),
    "clip different n": lambda: clip_info_nce(_v(_G, 4, 5), _v(_G, 3, 5)),
    "clip different d": lambda: clip_info_nce(_v(_G, 4, 5), _v(_G, 4, 6)),
    "supcon labels rows": lambda: multilabel_supcon([_v(_G, 4, 5)] * 2, torch.ones(3, 3), torch.ones(3, dtype=torch.bool)),
    "supcon labelled rows": lambda: multilabel_supcon([_v(_G, 4, 5)] * 2, torch.ones(4, 3), torch.ones(3, dtype=torch.bool)),
    "supcon views of different n": lambda: multilabel_supcon(
        [_v(_G, 4, 5), _v(_G, 3, 5)], torch.ones(4, 3), torch.ones(4, dtype=torch.bool)
    ),
    "bce labels shape": lambda: masked_bce(torch.zeros(4, 3), torch.ones(4, 2), torch.ones(4, dtype=torch.bool)),
    "bce labelled rows": lambda: masked_bce(torch.zeros(4, 3), torch.ones(4, 3), torch.ones(3, dtype=torch.bool)),
}


@pytest.mark.parametrize("case", sorted(BAD_SHAPES))
def test_bad_shapes_raise_value_error(case: str) -> None:
    """Shapes that do not fit must be refused with a ValueError (not an IndexError deep inside,
    nor a silent broadcast), so callers can report them."""
    with pytest.raises(ValueError):
        BAD_SHAPES[case]()


# --------------------------------------------------------------------------- presets / mosaic_loss


def _batch(seed: int, n: int = 6, d: int = 8, c: int = 4) -> tuple[dict, list, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z = {m: [_unit(g, n, d), _unit(g, n, d)] for m in ("s2", "s1")}
    logits = [(2 * torch.randn(n, c, generator=g, dtype=torch.float64)).requires_grad_(True) for _ in range(2)]
    labels, labelled = _random_labels(g, n, c, p=0.5)
    labelled[:2] = True
    labels[:2, 0] = 1
    return z, logits, labels, labelled


def test_presets_are_zeroed_weights() -> None:
    """Every baseline is the MoSAiC objective with some weights at zero; unknown names refused."""
    assert LossWeights.preset("mosaic") == LossWeights(1.0, 1.0, 1.0, 1.0)
    assert LossWeights.preset("supervised") == LossWeights(0.0, 0.0, 0.0, 1.0)
    assert LossWeights.preset("simclr") == LossWeights(1.0, 0.0, 0.0, 0.0)
    assert LossWeights.preset("clip") == LossWeights(0.0, 1.0, 0.0, 0.0)
    assert LossWeights.preset("contrastive") == LossWeights(1.0, 1.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        LossWeights.preset("nope")


def test_presets_return_fresh_objects() -> None:
    """Changing a preset's weights must not leak into the next call."""
    w = LossWeights.preset("mosaic")
    w.bce = 0.0
    assert LossWeights.preset("mosaic").bce == 1.0


@pytest.mark.parametrize("seed", SEEDS)
def test_supervised_objective_is_masked_bce_averaged_over_views(seed: int) -> None:
    """'supervised' = mean over views of masked BCE; contrastive terms are 0 and give z no gradient."""
    z, logits, labels, labelled = _batch(seed)
    out = mosaic_loss(z, logits, labels, labelled, LossWeights.preset("supervised"), tau=0.1)
    expected = sum(ref_masked_bce(lg, labels, labelled) for lg in logits) / len(logits)
    inputs = logits + [t for m in z for t in z[m]]
    _assert_value_and_grad(out["total"], expected, inputs)
    for k in ("intra", "inter", "supcon"):
        assert out[k].item() == 0.0
    torch.testing.assert_close(out["bce"], out["total"])


@pytest.mark.parametrize("seed", SEEDS)
def test_simclr_objective_is_mean_of_per_modality_nt_xent(seed: int) -> None:
    """'simclr' = mean over the modalities of NT-Xent between the two views; nothing else."""
    z, logits, labels, labelled = _batch(seed)
    tau = 0.2
    out = mosaic_loss(z, logits, labels, labelled, LossWeights.preset("simclr"), tau=tau)
    expected = 0.5 * (ref_nt_xent(*z["s2"], tau) + ref_nt_xent(*z["s1"], tau))
    inputs = [t for m in z for t in z[m]] + logits
    _assert_value_and_grad(out["total"], expected, inputs)
    for k in ("inter", "supcon", "bce"):
        assert out[k].item() == 0.0


def test_simclr_objective_single_modality() -> None:
    """With only S2 the intra term is that modality's NT-Xent (not halved), inter is 0."""
    z, logits, labels, labelled = _batch(3)
    del z["s1"]
    out = mosaic_loss(z, logits, labels, labelled, LossWeights.preset("mosaic"), tau=0.1)
    _assert_value_and_grad(out["intra"], ref_nt_xent(*z["s2"], 0.1), z["s2"])
    assert out["inter"].item() == 0.0


@pytest.mark.parametrize("seed", SEEDS[:2])
def test_clip_objective_averages_both_view_pairs(seed: int) -> None:
    """'clip' = mean over the two views of symmetric InfoNCE between S2 and S1."""
    z, logits, labels, labelled = _batch(seed)
    out = mosaic_loss(z, logits, labels, labelled, LossWeights.preset("clip"), tau=0.1)
    expected = 0.5 * sum(ref_clip(z["s2"][k], z["s1"][k], 0.1) for k in range(2))
    _assert_value_and_grad(out["total"], expected, [t for m in z for t in z[m]])


@pytest.mark.parametrize("seed", SEEDS[:2])
def test_mosaic_objective_is_weighted_sum_of_references(seed: int) -> None:
    """Full objective with non-unit weights: w . (intra, inter, supcon over the 4 views, bce)."""
    z, logits, labels, labelled = _batch(seed)
    tau = 0.1
    w = LossWeights(intra=0.5, inter=2.0, supcon=0.3, bce=1.7)
    out = mosaic_loss(z, logits, labels, labelled, w, tau=tau)
    intra = 0.5 * (ref_nt_xent(*z["s2"], tau) + ref_nt_xent(*z["s1"], tau))
    inter = 0.5 * sum(ref_clip(z["s2"][k], z["s1"][k], tau) for k in range(2))
    sup = ref_supcon(z["s2"] + z["s1"], labels, labelled, tau)
    bce = sum(ref_masked_bce(lg, labels, labelled) for lg in logits) / 2
    expected = w.intra * intra + w.inter * inter + w.supcon * sup + w.bce * bce
    _assert_value_and_grad(out["total"], expected, [t for m in z for t in z[m]] + logits)
    tol = _tol(out["total"])
    for key, ref in (("intra", intra), ("inter", inter), ("supcon", sup), ("bce", bce)):
        torch.testing.assert_close(out[key].double(), ref.detach(), **tol)
    assert math.isfinite(out["total"].item())


def test_patches_without_a_modality_leave_its_terms_as_if_they_were_not_in_the_batch():
    """An optical-only scene window in a batch: its (zero-input) SAR embedding must not count as
    an anchor, a positive or a negative of the SAR and inter-modal terms."""
    g = torch.Generator().manual_seed(3)
    n, d = 10, 8
    z = {m: [F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1) for _ in range(2)]
         for m in ("s2", "s1")}
    labels = (torch.rand(n, 5, generator=g) > 0.6).double()
    labelled = torch.rand(n, generator=g) > 0.3
    has_s1 = torch.tensor([True, False, True, True, False, True, True, True, False, True])
    keep = has_s1.nonzero().squeeze(1)
    assert torch.allclose(nt_xent(z["s1"][0], z["s1"][1], 0.1, has_s1),
                          nt_xent(z["s1"][0][keep], z["s1"][1][keep], 0.1))
    assert torch.allclose(clip_info_nce(z["s2"][0], z["s1"][0], 0.1, has_s1),
                          clip_info_nce(z["s2"][0][keep], z["s1"][0][keep], 0.1))
    # SupCon: the SAR views of patches without SAR drop out; their optical views stay
    views = [z["s2"][0], z["s2"][1], z["s1"][0], z["s1"][1]]
    ones = torch.ones(n, dtype=torch.bool)
    masked = multilabel_supcon(views, labels, labelled, 0.1, [ones, ones, has_s1, has_s1])
    assert torch.isfinite(masked) and not torch.allclose(masked, multilabel_supcon(views, labels, labelled, 0.1))
    # every view present is the default
    lab_all = multilabel_supcon(views, labels, labelled, 0.1, [ones, ones, ones, ones])
    assert torch.allclose(lab_all, multilabel_supcon(views, labels, labelled, 0.1))
    w = LossWeights.preset("mosaic")
    terms = mosaic_loss(z, [torch.zeros(n, 5), torch.zeros(n, 5)], labels, labelled, w, 0.1,
                        {"s2": ones, "s1": has_s1})
    want_intra = 0.5 * (nt_xent(z["s2"][0], z["s2"][1], 0.1) + nt_xent(z["s1"][0][keep], z["s1"][1][keep], 0.1))
    assert torch.allclose(terms["intra"], want_intra) and torch.isfinite(terms["total"])
