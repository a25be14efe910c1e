"""Per-class decision thresholds for the multi-hot output, chosen on a validation split.

One threshold of 0.5 for every class predicts one or two labels where patches carry three to
five: a rare class's probabilities seldom reach 0.5. Each class gets the threshold that
maximises its F1 on the validation patches; a class with fewer than ``MIN_POSITIVES`` positives
there keeps 0.5 (too few to choose from), and no threshold goes below ``FLOOR`` (a class the
model scores near 0 everywhere would otherwise be predicted everywhere). They are stored in the
model card (``decision_thresholds``) and used by the engine's multi-hot output and by
``python -m core evaluate``'s F1 at the card's thresholds.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

MIN_POSITIVES = 3
FLOOR = 0.05
DEFAULT = 0.5


def choose_thresholds(y_true: np.ndarray, scores: np.ndarray, min_positives: int = MIN_POSITIVES,
                      floor: float = FLOOR) -> list[float]:
    """Per class, the probability at or above which it is predicted: the F1-maximising one on
    (``y_true`` [N, K], ``scores`` [N, K]); ``DEFAULT`` where the class has too few positives."""
    from sklearn.metrics import precision_recall_curve

    y_true = np.asarray(y_true).astype(int)
    scores = np.asarray(scores, dtype=np.float64)
    out = []
    for k in range(y_true.shape[1]):
        if y_true[:, k].sum() < min_positives:
            out.append(DEFAULT)
            continue
        precision, recall, cuts = precision_recall_curve(y_true[:, k], scores[:, k])
        f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
        best = np.flatnonzero(f1 >= f1.max() - 1e-12)[-1]  # ties: the highest threshold (fewest false positives)
        out.append(max(floor, float(cuts[best])))
    return out


def card_thresholds(card: dict[str, Any], classes: Sequence[str]) -> np.ndarray | None:
    """The card's thresholds in ``classes`` order, or None when it has none (then 0.5 for all)."""
    table = card.get("decision_thresholds", {}).get("values")
    if not table:
        return None
    missing = [c for c in classes if c not in table]
    if missing:
        raise ValueError(f"the model card's decision_thresholds lack {missing[0]!r}: recompute them with "
                         f"python -m core thresholds")
    return np.array([float(table[c]) for c in classes])
