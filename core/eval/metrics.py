"""Multi-label metrics over a whole evaluation set (never averaged per batch).

Classes with no positive in the set have no defined AP or F1: they are reported as
``None`` and left out of the macro averages (not counted as 0 or 1).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.metrics import (
    adjusted_rand_score,
    average_precision_score,
    f1_score,
    normalized_mutual_info_score,
    silhouette_score,
)


def _nan_to_none(x: float) -> float | None:
    return None if x is None or np.isnan(x) else float(x)


def multilabel_metrics(
    y_true: np.ndarray, scores: np.ndarray, classes: Sequence[str], threshold: float | np.ndarray = 0.5
) -> dict:
    """AP macro/micro, F1 macro/micro and per-class AP/F1 for probabilities ``scores`` [N, K];
    F1 predicts a class at ``threshold`` and above (one for all, or [K] per class)."""
    y_true = np.asarray(y_true).astype(int)
    scores = np.asarray(scores, dtype=np.float64)
    if y_true.shape != scores.shape or y_true.shape[1] != len(classes):
        raise ValueError(f"labels {y_true.shape}, scores {scores.shape} and {len(classes)} classes do not fit")
    defined = y_true.sum(0) > 0
    pred = (scores >= threshold).astype(int)
    per_ap = [average_precision_score(y_true[:, k], scores[:, k]) if defined[k] else None for k in range(len(classes))]
    per_f1 = [f1_score(y_true[:, k], pred[:, k], zero_division=0) if defined[k] else None for k in range(len(classes))]
    idx = np.flatnonzero(defined)
    return {
        "n_samples": int(y_true.shape[0]),
        "n_classes_defined": int(defined.sum()),
        "ap_macro": _nan_to_none(np.mean([per_ap[k] for k in idx])) if len(idx) else None,
        "ap_micro": _nan_to_none(average_precision_score(y_true.ravel(), scores.ravel())) if y_true.any() else None,
        "f1_macro": _nan_to_none(np.mean([per_f1[k] for k in idx])) if len(idx) else None,
        "f1_micro": float(f1_score(y_true.ravel(), pred.ravel(), zero_division=0)),
        "per_class_ap": {c: _nan_to_none(v) if v is not None else None for c, v in zip(classes, per_ap)},
        "per_class_f1": {c: float(v) if v is not None else None for c, v in zip(classes, per_f1)},
    }


def dominant_label(y_true: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
    """One label per patch for clustering scores: among its labels, the most frequent in
    ``reference`` (default: the set itself), ties to the earlier class; -1 for no label."""
    y = np.asarray(y_true).astype(bool)
    freq = (np.asarray(reference) if reference is not None else y).sum(0).astype(float)
    score = np.where(y, freq[None, :] + 1e-6 * (y.shape[1] - np.arange(y.shape[1]))[None, :], -1.0)
    out = score.argmax(1)
    out[~y.any(1)] = -1
    return out


def cluster_coherence(embeddings: np.ndarray, y_true: np.ndarray, seed: int = 0, k: int | None = None) -> dict:
    """K-means on L2-normalised embeddings; NMI and ARI against the dominant label, silhouette.

    ``k`` defaults to the number of distinct dominant labels in the set.
    """
    from sklearn.cluster import KMeans

    x = np.asarray(embeddings, dtype=np.float64)
    x = x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)
    dom = dominant_label(y_true)
    keep = dom >= 0
    x, dom = x[keep], dom[keep]
    k = k or len(np.unique(dom))
    if k < 2 or len(x) <= k:
        return {"k": k, "nmi": None, "ari": None, "silhouette": None}
    assign = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(x)
    sil = silhouette_score(x, assign) if len(np.unique(assign)) > 1 else None
    return {
        "k": int(k),
        "nmi": float(normalized_mutual_info_score(dom, assign)),
        "ari": float(adjusted_rand_score(dom, assign)),
        "silhouette": _nan_to_none(sil) if sil is not None else None,
    }


def class_prior_scores(train_labels: np.ndarray, n: int) -> np.ndarray:
    """The class-prior baseline: every patch scored with the training label frequencies."""
    prior = np.asarray(train_labels, dtype=np.float64).mean(0)
    return np.tile(prior, (n, 1))
