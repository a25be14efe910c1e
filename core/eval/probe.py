"""Linear-probe protocol: frozen embeddings, one logistic regression per class.

Classes with no positive (or no negative) among the labelled training patches cannot be
fitted; they are scored with their training frequency, like the class-prior baseline.
"""
from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler


def linear_probe(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, c: float = 1.0, seed: int = 0
) -> np.ndarray:
    """Probabilities [N_test, K] from per-class logistic regressions fitted on the train set."""
    scaler = StandardScaler().fit(train_x)
    a, b = scaler.transform(train_x), scaler.transform(test_x)
    train_y = np.asarray(train_y).astype(int)
    out = np.empty((len(test_x), train_y.shape[1]))
    for k in range(train_y.shape[1]):
        col = train_y[:, k]
        if col.min() == col.max():
            out[:, k] = col.mean()
            continue
        clf = LogisticRegression(C=c, max_iter=2000, random_state=seed).fit(a, col)
        out[:, k] = clf.predict_proba(b)[:, 1]
    return out
