"""Evaluation protocols over a reBEN folder: the model's own head, or a linear probe.

Reports the multi-label metrics, cluster coherence of the embeddings, and the class-prior
baseline on the same patches, so every figure comes with the floor it has to beat.
"""
from __future__ import annotations

from typing import Any, Sequence



from ..data.reben import ReBenPatches
from ..models.mosaic import MosaicModel
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
) -> dict[str, Any]:
    """Metrics of ``model`` on ``splits`` of ``data``.

    ``protocol='head'`` scores the model's classifier; ``'linear-probe'`` fits logistic
    regressions on the frozen embeddings of the labelled ``train_splits`` patches (the
    same seeded ``label_fraction`` as training) and scores those.
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
        pass  # a folder without a training split: no prior baseline, no probe
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
    if train is not None:
        prior = class_prior_scores(train.labels.numpy()[train.labelled], len(test))
        result["class_prior"] = {
            k: v for k, v in multilabel_metrics(out["labels"], prior, classes).items() if not k.startswith("per_class")
        }
    return result


def summary_line(result: dict[str, Any]) -> str:
    """One line of the headline figures, in percent."""
    m = result["metrics"]

    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{100 * x:.1f}"

    line = (f"AP macro {pct(m['ap_macro'])}  AP micro {pct(m['ap_micro'])}  "
            f"F1 macro {pct(m['f1_macro'])}  F1 micro {pct(m['f1_micro'])}  (n={m['n_samples']})")
    if "class_prior" in result:
        p = result["class_prior"]
        line += f"  | class prior: AP macro {pct(p['ap_macro'])}  AP micro {pct(p['ap_micro'])}"
    return line


