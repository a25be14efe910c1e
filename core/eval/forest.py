"""The baseline an analyst would try first: a random forest on per-band statistics.

Each patch becomes the mean and standard deviation of every band of the evaluated modalities
(12 + 2 bands: 28 numbers), the features of the SCP / dzetsaka-style classifiers QGIS users
know; one scikit-learn forest fits all classes at once (multi-output) on the labelled training
patches. ``python -m core evaluate`` prints it beside the model in the same run, so a model's
figures always stand next to what it has to beat.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from sklearn.ensemble import RandomForestClassifier


def band_statistics(dataset: torch.utils.data.Dataset, modalities: Sequence[str],
                    indices: Sequence[int] | None = None) -> np.ndarray:
    """[N, 2 x bands] per-band mean and standard deviation of each patch (normalised values:
    the same information as raw reflectance, up to each band's affine map)."""
    rows = []
    for i in (range(len(dataset)) if indices is None else indices):
        item = dataset[int(i)]
        x = torch.cat([item[m].reshape(item[m].shape[0], -1) for m in modalities]).double()
        rows.append(torch.cat([x.mean(1), x.std(1)]).numpy())
    return np.stack(rows)


def forest_scores(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, seed: int = 0,
                  trees: int = 300) -> np.ndarray:
    """Probabilities [N_test, K] of a random forest fitted on (train_x, train_y [N, K]); a class
    with no positive (or no negative) among the training patches gets its training frequency."""
    train_y = np.asarray(train_y).astype(int)
    forest = RandomForestClassifier(n_estimators=trees, random_state=seed, n_jobs=-1).fit(train_x, train_y)
    out = np.empty((len(test_x), train_y.shape[1]))
    for k, proba in enumerate(forest.predict_proba(test_x)):
        classes = list(forest.classes_[k])
        out[:, k] = proba[:, classes.index(1)] if 1 in classes else 0.0
    return out
