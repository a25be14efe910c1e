"""Evaluation metrics (core.eval.metrics) and the linear probe (core.eval.probe).

Multi-label scores are checked against scikit-learn computed independently here; classes
without positives must be reported as undefined (None), never as 0 or 1, and left out of
macro averages, since counting them would bias comparisons with published numbers.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score

from mosaic.core.eval.metrics import (
    class_prior_scores,
    cluster_coherence,
    dominant_label,
    multilabel_metrics,
)
from mosaic.core.eval.probe import linear_probe

CLASSES = [f"c{k}" for k in range(7)]
EMPTY = (2, 5)  # classes with no positive in the evaluation set


def _data(seed: int, n: int = 80) -> tuple[np.ndarray, np.ndarray]:
    """Random multi-hot labels (classes EMPTY all negative) and noisy scores correlated with them."""
    rng = np.random.default_rng(seed)
    k = len(CLASSES)
    y = (rng.random((n, k)) < rng.uniform(0.05, 0.6, k)).astype(int)
    y[:, list(EMPTY)] = 0
    y[0, [0, 1, 3, 4, 6]] = 1  # every other class has a positive
    scores = np.clip(0.35 * y + rng.random((n, k)) * 0.8, 0, 1)
    return y, scores


# --------------------------------------------------------------------------- multilabel_metrics


@pytest.mark.parametrize("seed", (0, 1, 2, 3))
def test_multilabel_metrics_match_sklearn(seed: int) -> None:
    """Per-class AP, AP macro (defined classes), AP micro, F1 micro/macro equal scikit-learn's."""
    y, s = _data(seed)
    m = multilabel_metrics(y, s, CLASSES)
    defined = [k for k in range(len(CLASSES)) if k not in EMPTY]
    pred = (s >= 0.5).astype(int)

    assert m["n_samples"] == len(y)
    assert m["n_classes_defined"] == len(defined)
    per_ap = {k: average_precision_score(y[:, k], s[:, k]) for k in defined}
    for k in defined:
        assert m["per_class_ap"][CLASSES[k]] == pytest.approx(per_ap[k], abs=1e-12)
        assert m["per_class_f1"][CLASSES[k]] == pytest.approx(f1_score(y[:, k], pred[:, k]), abs=1e-12)
    assert m["ap_macro"] == pytest.approx(np.mean(list(per_ap.values())), abs=1e-12)
    assert m["ap_micro"] == pytest.approx(average_precision_score(y, s, average="micro"), abs=1e-12)
    assert m["f1_micro"] == pytest.approx(f1_score(y, pred, average="micro"), abs=1e-12)
    assert m["f1_macro"] == pytest.approx(
        f1_score(y, pred, average="macro", labels=defined, zero_division=0), abs=1e-12
    )


def test_undefined_classes_are_none_and_excluded() -> None:
    """Classes with no positive: None in the per-class tables, absent from the macro means."""
    y, s = _data(5)
    m = multilabel_metrics(y, s, CLASSES)
    for k in EMPTY:
        assert m["per_class_ap"][CLASSES[k]] is None
        assert m["per_class_f1"][CLASSES[k]] is None
    defined_ap = [v for v in m["per_class_ap"].values() if v is not None]
    defined_f1 = [v for v in m["per_class_f1"].values() if v is not None]
    assert len(defined_ap) == len(CLASSES) - len(EMPTY)
    assert m["ap_macro"] == pytest.approx(np.mean(defined_ap), abs=1e-12)
    assert m["f1_macro"] == pytest.approx(np.mean(defined_f1), abs=1e-12)


def test_undefined_class_does_not_move_macro() -> None:
    """Adding an all-negative class (scored anyhow) leaves every macro and micro score unchanged."""
    y, s = _data(6)
    base = multilabel_metrics(y, s, CLASSES)
    rng = np.random.default_rng(0)
    y2 = np.hstack([y, np.zeros((len(y), 1), int)])
    s2 = np.hstack([s, rng.random((len(y), 1)) * 0.4])  # below threshold: no false positive for F1
    more = multilabel_metrics(y2, s2, CLASSES + ["extra"])
    assert more["per_class_ap"]["extra"] is None
    assert more["n_classes_defined"] == base["n_classes_defined"]
    for key in ("ap_macro", "f1_macro", "f1_micro"):
        assert more[key] == pytest.approx(base[key], abs=1e-12)


def test_perfect_predictor_gets_one() -> None:
    """Scores equal to the labels: AP 1 on every defined class, macro, micro; F1 1."""
    y, _ = _data(7)
    m = multilabel_metrics(y, y.astype(float), CLASSES)
    assert m["ap_macro"] == pytest.approx(1.0)
    assert m["ap_micro"] == pytest.approx(1.0)
    assert m["f1_macro"] == pytest.approx(1.0)
    assert m["f1_micro"] == pytest.approx(1.0)
    for k, c in enumerate(CLASSES):
        assert (m["per_class_ap"][c] is None) == (k in EMPTY)
        if k not in EMPTY:
            assert m["per_class_ap"][c] == pytest.approx(1.0)


def test_class_prior_ap_macro_is_mean_prevalence() -> None:
    """A constant score per class ranks nothing, so its AP is that class's prevalence in the
    evaluation set; AP macro = mean prevalence over the defined classes."""
    y_train, _ = _data(8, n=50)
    y_test, _ = _data(9, n=70)
    scores = class_prior_scores(y_train, len(y_test))
    assert scores.shape == y_test.shape
    np.testing.assert_allclose(scores[3], y_train.mean(0))
    m = multilabel_metrics(y_test, scores, CLASSES)
    defined = [k for k in range(len(CLASSES)) if k not in EMPTY]
    prevalence = y_test.mean(0)
    assert m["ap_macro"] == pytest.approx(prevalence[defined].mean(), abs=1e-12)
    for k in defined:
        assert m["per_class_ap"][CLASSES[k]] == pytest.approx(prevalence[k], abs=1e-12)


def test_threshold_is_used_for_f1() -> None:
    """F1 uses scores >= threshold as positive predictions."""
    y, s = _data(10)
    m = multilabel_metrics(y, s, CLASSES, threshold=0.7)
    assert m["f1_micro"] == pytest.approx(f1_score(y, (s >= 0.7).astype(int), average="micro"), abs=1e-12)


def test_score_equal_to_threshold_is_positive() -> None:
    """A score exactly at the threshold counts as a positive prediction (>=)."""
    y = np.array([[1, 0], [0, 1], [1, 1]])
    s = np.array([[0.5, 0.1], [0.2, 0.5], [0.5, 0.5]])
    m = multilabel_metrics(y, s, ["a", "b"])
    assert m["f1_micro"] == pytest.approx(1.0)
    assert m["per_class_f1"] == {"a": pytest.approx(1.0), "b": pytest.approx(1.0)}


def test_metrics_are_json_serialisable() -> None:
    """Reports are written as JSON: plain floats/ints/None, no numpy scalars or NaN."""
    y, s = _data(11)
    m = multilabel_metrics(y, s, CLASSES)
    text = json.dumps(m, allow_nan=False)
    assert json.loads(text)["per_class_ap"][CLASSES[EMPTY[0]]] is None


def test_no_positive_at_all() -> None:
    """An evaluation set without any positive: every AP undefined (None), nothing crashes."""
    y = np.zeros((10, 3), int)
    m = multilabel_metrics(y, np.random.default_rng(0).random((10, 3)), ["a", "b", "c"])
    assert m["n_classes_defined"] == 0
    assert m["ap_macro"] is None and m["ap_micro"] is None and m["f1_macro"] is None
    assert all(v is None for v in m["per_class_ap"].values())


def test_shape_mismatch_raises() -> None:
    """Labels, scores and class names that do not fit are refused."""
    y, s = _data(12)
    with pytest.raises(ValueError):
        multilabel_metrics(y, s[:, :-1], CLASSES)
    with pytest.raises(ValueError):
        multilabel_metrics(y, s, CLASSES[:-1])


# --------------------------------------------------------------------------- dominant label


def test_dominant_label_hand_worked() -> None:
    """Most frequent label in the set among the patch's labels; ties to the earlier class; -1 for none."""
    y = np.array(
        [
            [1, 1, 0],
            [0, 1, 0],
            [0, 1, 1],
            [1, 0, 1],
            [0, 0, 0],
            [0, 0, 1],
        ]
    )
    # set frequencies: c0 = 2, c1 = 3, c2 = 3
    np.testing.assert_array_equal(dominant_label(y), [1, 1, 1, 2, -1, 2])
    # with reference frequencies [10, 1, 5]
    ref = np.array([[1, 0, 0]] * 10 + [[0, 1, 0]] + [[0, 0, 1]] * 5)
    np.testing.assert_array_equal(dominant_label(y, ref), [0, 1, 2, 0, -1, 2])
    # reference without any of these labels: all ties -> earliest own label, still not -1
    np.testing.assert_array_equal(dominant_label(y, np.zeros((4, 3))), [0, 1, 1, 0, -1, 2])


@pytest.mark.parametrize("seed", (0, 1, 2))
def test_dominant_label_matches_loop(seed: int) -> None:
    """Random sets (many ties, some empty rows) against a direct loop."""
    rng = np.random.default_rng(seed)
    y = (rng.random((40, 5)) < 0.3).astype(int)
    freq = y.sum(0)
    expected = []
    for row in y:
        best, best_f = -1, -1
        for k in range(5):
            if row[k] and freq[k] > best_f:  # strict: ties keep the earlier class
                best, best_f = k, freq[k]
        expected.append(best)
    np.testing.assert_array_equal(dominant_label(y), expected)


# --------------------------------------------------------------------------- cluster coherence


def _blobs(seed: int, n_per: int = 50, k: int = 4, d: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """k tight blobs in distinct directions (so they stay separated after L2 normalisation)."""
    rng = np.random.default_rng(seed)
    centers = np.eye(d)[:k] * 5.0
    x = np.concatenate([c + 0.3 * rng.standard_normal((n_per, d)) for c in centers])
    blob = np.repeat(np.arange(k), n_per)
    return x, blob


def test_cluster_coherence_separated_blobs() -> None:
    """Labels = blob identity: K-means recovers them, NMI and ARI ~1, clear silhouette."""
    x, blob = _blobs(0)
    y = np.eye(4, dtype=int)[blob]
    r = cluster_coherence(x, y, seed=0)
    assert r["k"] == 4
    assert r["nmi"] > 0.95 and r["ari"] > 0.95
    assert r["silhouette"] > 0.5


def test_cluster_coherence_multi_hot_uses_dominant_label() -> None:
    """A second, rarer label on some patches does not change their dominant label; unlabelled
    patches are left out, so the blobs still score ~1."""
    x, blob = _blobs(1)
    y = np.eye(4, dtype=int)[blob]
    y = np.hstack([y, np.zeros((len(y), 1), int)])
    y[::7, 4] = 1  # rare extra label
    noise = np.random.default_rng(2).standard_normal((15, x.shape[1]))
    x = np.vstack([x, noise])
    y = np.vstack([y, np.zeros((15, 5), int)])
    r = cluster_coherence(x, y, seed=0)
    assert r["k"] == 4
    assert r["nmi"] > 0.95 and r["ari"] > 0.95


def test_cluster_coherence_random_labels_near_zero() -> None:
    """Labels unrelated to the embedding: NMI and ARI near 0."""
    x, _ = _blobs(3, n_per=60)
    rng = np.random.default_rng(4)
    y = np.eye(4, dtype=int)[rng.integers(0, 4, len(x))]
    r = cluster_coherence(x, y, seed=0)
    assert r["nmi"] < 0.1
    assert abs(r["ari"]) < 0.1


def test_cluster_coherence_uses_directions_not_magnitudes() -> None:
    """Embeddings are L2-normalised before K-means: two directions, each at radii 1 and 20,
    cluster by direction (a raw-space K-means would split near and far points instead)."""
    rng = np.random.default_rng(6)
    d = 6
    parts, labels = [], []
    for k, radius in ((0, 1.0), (0, 20.0), (1, 1.0), (1, 20.0)):
        direction = np.eye(d)[k] + 0.05 * rng.standard_normal((40, d))
        parts.append(radius * direction)
        labels += [k] * 40
    r = cluster_coherence(np.vstack(parts), np.eye(2, dtype=int)[labels], seed=0)
    assert r["k"] == 2
    assert r["nmi"] > 0.95 and r["ari"] > 0.95


def test_cluster_coherence_single_label_is_undefined() -> None:
    """One dominant label only: clustering scores are undefined (None)."""
    x, _ = _blobs(5)
    y = np.zeros((len(x), 3), int)
    y[:, 1] = 1
    r = cluster_coherence(x, y)
    assert r["nmi"] is None and r["ari"] is None and r["silhouette"] is None


# --------------------------------------------------------------------------- linear probe


def test_linear_probe_separable_data() -> None:
    """Classes given by linear rules on the features: the probe ranks them almost perfectly."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((10, 3))
    x_train, x_test = rng.standard_normal((300, 10)), rng.standard_normal((150, 10))
    y_train, y_test = (x_train @ w > 0).astype(int), (x_test @ w > 0).astype(int)
    p = linear_probe(x_train, y_train, x_test, c=10.0)
    assert p.shape == (150, 3)
    assert ((p >= 0) & (p <= 1)).all()
    m = multilabel_metrics(y_test, p, ["a", "b", "c"])
    assert m["ap_macro"] > 0.97
    assert m["f1_micro"] > 0.9


def test_linear_probe_constant_class_gets_its_frequency() -> None:
    """A class with no positive (or no negative) in training cannot be fitted: it is scored
    with its training frequency (0 or 1), like the class prior."""
    rng = np.random.default_rng(1)
    x_train, x_test = rng.standard_normal((40, 5)), rng.standard_normal((12, 5))
    y_train = np.zeros((40, 3), int)
    y_train[:, 1] = 1
    y_train[:, 2] = (x_train[:, 0] > 0).astype(int)
    p = linear_probe(x_train, y_train, x_test)
    np.testing.assert_array_equal(p[:, 0], 0.0)
    np.testing.assert_array_equal(p[:, 1], 1.0)
    assert 0 < p[:, 2].min() and p[:, 2].max() < 1


def test_linear_probe_is_deterministic() -> None:
    """Same inputs and seed, same probabilities."""
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((60, 4)), (rng.random((60, 2)) < 0.4).astype(int)
    np.testing.assert_array_equal(linear_probe(x, y, x[:10], seed=3), linear_probe(x, y, x[:10], seed=3))
