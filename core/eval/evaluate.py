"""Evaluation protocols over a reBEN folder: the model's own head, or a linear probe.

Reports the multi-label metrics, cluster coherence of the embeddings, and on the same patches
the floors the model has to beat: the class prior and a random forest on per-band statistics
(``forest.py``), fitted on the same labelled training patches. With the model card's per-class
decision thresholds (``thresholds.py``), F1 is reported at them as well as at 0.5.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..data.reben import ReBenPatches
from ..models.mosaic import MosaicModel
from .forest import band_statistics, forest_scores
from .metrics import class_prior_scores, cluster_coherence, multilabel_metrics
from .predict import predict
from .probe import linear_probe

PROTOCOLS = ("head", "linear-probe")


def evaluate_model(
    model: MosaicModel,
    data: str,
    splits: Sequence[str] = ("validation",),
    modalities: Sequence[str] = ("s2", "s1"),
    protocol: str = "head",
    train_splits: Sequence[str] = ("train",),
    label_fraction: float = 1.0,
    seed: int = 0,
    device: str = "cpu",
    batch_size: int = 32,
    thresholds: Sequence[float] | None = None,
) -> dict[str, Any]:
    """Metrics of ``model`` on ``splits`` of ``data``.

    ``protocol='head'`` scores the model's classifier; ``'linear-probe'`` fits logistic
    regressions on the frozen embeddings of the labelled ``train_splits`` patches (the
    same seeded ``label_fraction`` as training) and scores those. ``thresholds``: per-class
    decision thresholds (the card's), for F1 at them beside F1 at 0.5.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    classes = tuple(model.cfg.classes)
    test = ReBenPatches(data, splits, classes=classes)
    out = predict(model, test, modalities, batch_size, device)
    train = None
    try:
        train = ReBenPatches(data, train_splits, label_fraction, seed, classes=classes)
    except ValueError:
        pass  # a folder without a training split: no baselines, no probe
    scores = out["probs"]
    if protocol == "linear-probe":
        if train is None:
            raise ValueError(f"the linear probe needs labelled {list(train_splits)} patches in {data}")
        tr = predict(model, train, modalities, batch_size, device)
        keep = train.labelled
        scores = linear_probe(tr["embeddings"][keep], tr["labels"][keep], out["embeddings"], seed=seed)
    result: dict[str, Any] = {
        "data": str(data),
        "splits": list(splits),
        "modalities": list(modalities),
        "protocol": protocol,
        "metrics": multilabel_metrics(out["labels"], scores, classes),
        "clusters": cluster_coherence(out["embeddings"], out["labels"], seed=seed),
    }
    if thresholds is not None:
        at = multilabel_metrics(out["labels"], scores, classes, threshold=np.asarray(thresholds, dtype=np.float64))
        result["metrics_at_thresholds"] = {k: at[k] for k in ("f1_macro", "f1_micro", "per_class_f1")}
        result["thresholds"] = [float(t) for t in thresholds]
    if train is not None:
        labelled = np.flatnonzero(train.labelled)
        train_y = train.labels.numpy()[labelled]

        def headline(s: np.ndarray) -> dict[str, Any]:
            return {k: v for k, v in multilabel_metrics(out["labels"], s, classes).items() if not k.startswith("per_class")}

        result["class_prior"] = headline(class_prior_scores(train_y, len(test)))
        forest = forest_scores(band_statistics(train, modalities, labelled), train_y, band_statistics(test, modalities),
                               seed=seed)
        result["random_forest"] = {**headline(forest), "features": "per-band mean and std", "seed": seed}
    return result


def summary_line(result: dict[str, Any]) -> str:
    """The headline figures, in percent: the model, then its floors (one line each)."""
    m = result["metrics"]

    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{100 * x:.1f}"

    line = (f"AP macro {pct(m['ap_macro'])}  AP micro {pct(m['ap_micro'])}  "
            f"F1 macro {pct(m['f1_macro'])}  F1 micro {pct(m['f1_micro'])}  (n={m['n_samples']})")
    if "metrics_at_thresholds" in result:
        t = result["metrics_at_thresholds"]
        line += f"  | at the card's thresholds: F1 macro {pct(t['f1_macro'])}  F1 micro {pct(t['f1_micro'])}"
    for key, name in (("class_prior", "class prior"), ("random_forest", "random forest on band mean/std")):
        if key in result:
            p = result[key]
            line += (f"\n  {name}: AP macro {pct(p['ap_macro'])}  AP micro {pct(p['ap_micro'])}  "
                     f"F1 macro {pct(p['f1_macro'])}  F1 micro {pct(p['f1_micro'])}")
    return line
