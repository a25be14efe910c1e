"""Fine-tune a MoSAiC model on a few labelled windows, adding the analyst's new classes.

- New classes get new rows of the fusion head; the known rows are copied, so the known
  classes keep their behaviour at the start. A new row is "imprinted" from the base
  model's features of the labelled windows (per modality: the direction from the mean of
  the windows without the class to the mean of those with it, scaled to a logit margin
  of +-2), which starts training from a sensible classifier instead of zeros.
- Training is ``core.train.loop.train`` with the MoSAiC objective: intra- and inter-modal
  contrastive terms on every window (labelled ones plus unlabelled windows of the same
  scene), supervised contrastive and BCE on the labelled ones. ``train_parts`` says which
  parts learn: 'head' (projectors + classifier) or 'head+N' (also the last N encoder stages).
- Validation uses whole held-out polygons (see ``samples.split_by_polygon``); AP is
  computed over the whole validation set, for the fine-tuned and for the base model.
"""
from __future__ import annotations

import copy
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..data.bands import NEW_CLASS_COLORS
from ..data.scene_windows import PooledPatches
from ..eval.metrics import multilabel_metrics
from ..eval.predict import predict
from ..io.model_file import load_model, model_paths, save_model, sha256_file
from ..models.mosaic import ModelConfig, MosaicModel
from ..train.config import TrainConfig
from ..train.loop import train
from .samples import ArrayPatches, SampleSet


class Cancelled(Exception):
    """The fine-tuning was cancelled; no model file was written."""


@dataclass
class FinetuneConfig:
    """The knobs of one fine-tuning run (recorded in the model card)."""

    epochs: int = 10
    train_parts: str = "head"
    val_share: float = 0.2
    batch_size: int = 16
    lr: float = 1e-3
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    weights: dict[str, float] = field(default_factory=dict)  # overrides of the mosaic weights (all 1)
    tau: float = 0.1
    augment: bool = True
    windows_per_polygon: int = 8
    unlabelled: int = 64  # at most this many unlabelled scene windows for the contrastive terms
    max_nodata: float = 0.5
    imprint: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FinetuneResult:
    model: MosaicModel
    card: dict[str, Any]
    classes: tuple[str, ...]
    new_classes: list[str]
    history: list[dict[str, float]]
    steps: list[dict[str, float]]
    validation: dict[str, Any] | None
    base_validation: dict[str, Any] | None
    seconds: float
    model_path: str = ""
    card_path: str = ""
    report_png: str = ""
    report_html: str = ""


@torch.no_grad()
def _features(model: MosaicModel, s2: np.ndarray | None, s1: np.ndarray | None, batch: int = 32) -> dict[str, np.ndarray]:
    model.eval()
    out: dict[str, list[np.ndarray]] = {}
    n = len(s2) if s2 is not None else len(s1)
    for i in range(0, n, batch):
        f = model.features(None if s2 is None else torch.from_numpy(s2[i:i + batch]),
                           None if s1 is None else torch.from_numpy(s1[i:i + batch]))
        for m, v in f.items():
            out.setdefault(m, []).append(v.numpy())
    return {m: np.concatenate(v) for m, v in out.items()}


def extend_model(
    model: MosaicModel,
    card: dict[str, Any],
    classes: Sequence[str],
    colors: dict[str, str] | None = None,
    feats: dict[str, np.ndarray] | None = None,
    labels: np.ndarray | None = None,
) -> tuple[MosaicModel, dict[str, Any]]:
    """A copy of ``model`` predicting ``classes`` (the known ones first, in their order).

    Args:
        classes: the full new class list; it must start with... any order is accepted, known
            rows are copied by name.
        feats, labels: base features [N, D] per modality and multi-hot labels [N, K_new] of the
            labelled windows, to imprint the new rows; without them new rows start at zero.
    """
    classes = tuple(classes)
    known = list(model.cfg.classes)
    cfg = ModelConfig.from_dict({**model.cfg.to_dict(), "classes": list(classes)})
    new = MosaicModel(cfg)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("head.")}
    new.load_state_dict(state, strict=False)
    with torch.no_grad():
        for m in new.head.linear:
            new.head.linear[m].weight.zero_()
        new.head.bias.zero_()
        for k, c in enumerate(classes):
            if c in known:
                j = known.index(c)
                for m in new.head.linear:
                    new.head.linear[m].weight[k] = model.head.linear[m].weight[j]
                new.head.bias[k] = model.head.bias[j]
            elif feats is not None and labels is not None:
                pos = labels[:, k] > 0.5
                if pos.any() and (~pos).any():
                    offsets = []
                    for m in [m for m in new.head.linear if m in feats]:
                        f = feats[m]
                        d = f[pos].mean(0) - f[~pos].mean(0)
                        w = 4.0 * d / max(float(d @ d), 1e-12)
                        new.head.linear[m].weight[k] = torch.from_numpy(w.astype(np.float32))
                        offsets.append(float(w @ (f[pos].mean(0) + f[~pos].mean(0)) / 2))
                    new.head.bias[k] = -float(np.mean(offsets))
    colors = colors or {}
    old = {c.get("name"): c.get("color", "#808080") for c in card.get("classes", [])}
    palette = iter(NEW_CLASS_COLORS * 8)
    out_card = copy.deepcopy(card)
    out_card["classes"] = [{"name": c, "color": colors.get(c) or old.get(c) or next(palette)} for c in classes]
    return new.eval(), out_card


def _metrics(model: MosaicModel, samples: SampleSet, classes: Sequence[str]) -> tuple[dict[str, Any], np.ndarray]:
    ds = ArrayPatches(samples.s2, samples.s1, samples.labels, samples.classes)
    mods = [m for m in ("s2", "s1") if getattr(ds, m) is not None]
    pred = predict(model, ds, mods, batch_size=32)
    return multilabel_metrics(samples.labels, pred["probs"], classes), pred["probs"]


def finetune(
    base: str | Path,
    train_set: SampleSet,
    val_set: SampleSet | None,
    unlabelled: dict[str, np.ndarray] | None,
    cfg: FinetuneConfig,
    out: str | Path | None = None,
    colors: dict[str, str] | None = None,
    provenance: dict[str, Any] | None = None,
    progress: Callable[[float], None] | None = None,
    is_cancelled: Callable[[], bool] | None = None,
    log: Callable[[str], None] | None = None,
) -> FinetuneResult:
    """Fine-tune the model ``base`` on ``train_set`` (its classes = the new model's classes).

    Writes ``out`` (NAME -> NAME.safetensors + NAME.json) and the report beside it when
    ``out`` is given; nothing is written when cancelled or on error.
    """
    from .report import write_report  # matplotlib only when a report is written

    t0 = time.perf_counter()
    progress = progress or (lambda f: None)
    is_cancelled = is_cancelled or (lambda: False)
    log = log or (lambda s: None)
    classes = train_set.classes
    base_model, base_card = load_model(base, "cpu")
    known = list(base_model.cfg.classes)
    new_classes = [c for c in classes if c not in known]
    missing_known = [c for c in known if c not in classes]
    if missing_known:
        raise ValueError(f"the class list must keep the base model's classes; missing {missing_known[:3]}")
    if len(train_set) < 2:
        raise ValueError(f"only {len(train_set)} training window(s): at least 2 are needed")
    feats = _features(base_model, train_set.s2, train_set.s1) if cfg.imprint and new_classes else None
    model, card = extend_model(base_model, base_card, classes, colors, feats, train_set.labels)
    parts: list[torch.utils.data.Dataset] = [ArrayPatches(train_set.s2, train_set.s1, train_set.labels, classes)]
    n_unl = 0
    if unlabelled:
        n_unl = len(next(iter(unlabelled.values())))
        if n_unl:
            parts.append(ArrayPatches(unlabelled.get("s2"), unlabelled.get("s1"), None, classes, labelled=False))
    dataset = PooledPatches(parts)
    mods = tuple(m for m in ("s2", "s1") if (train_set.s2 if m == "s2" else train_set.s1) is not None)
    batch = max(2, min(cfg.batch_size, len(dataset)))
    steps: list[dict[str, float]] = []
    total = cfg.epochs * -(-len(dataset) // batch)

    def on_step(s: dict[str, float]) -> None:
        steps.append(dict(s))
        progress(min(1.0, s["step"] / max(1, total)))
        if is_cancelled():
            raise Cancelled("cancelled")

    with tempfile.TemporaryDirectory(prefix="mosaic-finetune-") as tmp:
        init = Path(tmp) / "init"
        save_model(model, init, card)
        tcfg = TrainConfig(
            out=str(Path(tmp) / "run"), objective="mosaic", weights=dict(cfg.weights), tau=cfg.tau,
            modalities=mods, epochs=cfg.epochs, batch_size=batch, lr=cfg.lr, warmup_epochs=0, seed=cfg.seed,
            device=cfg.device, augment=cfg.augment, init=str(init), train_parts=cfg.train_parts,
            threads=cfg.threads, progress=False, batchnorm="local",
            modality_dropout=0.2 if len(mods) == 2 else 0.0,
        )
        log(f"training on {len(train_set)} labelled + {n_unl} unlabelled windows, {cfg.epochs} epochs, "
            f"batch {batch}, parts '{cfg.train_parts}'")
        result = train(tcfg, dataset, on_step)
    model = result.model.cpu().eval()
    validation = base_validation = None
    if val_set is not None and len(val_set):
        validation, _ = _metrics(model, val_set, classes)
        kidx = [classes.index(c) for c in known]
        base_val = val_set.subset(np.arange(len(val_set)))
        base_val.labels = val_set.labels[:, kidx]
        base_val.classes = tuple(known)
        base_validation, _ = _metrics(base_model, base_val, known)
    seconds = time.perf_counter() - t0
    base_w, base_c = model_paths(base)
    card.pop("sha256", None)
    card.pop("dtype", None)
    card["training"] = {
        "kind": "finetune",
        "base_model": {"name": base_c.stem, "sha256": sha256_file(base_w) if base_w.is_file() else None,
                       "classes": known},
        "new_classes": new_classes,
        "config": cfg.to_dict(),
        "train_config": tcfg.to_dict(),
        "samples": {"train_windows": len(train_set), "validation_windows": len(val_set) if val_set is not None else 0,
                    "unlabelled_windows": n_unl, "per_class_train": train_set.per_class(),
                    "counts": dict(train_set.counts)},
        "history": result.history,
        "seconds": round(seconds, 1),
        **(provenance or {}),
    }
    card["metrics"] = {"validation": {"metrics": validation}, "validation_base_model": {"metrics": base_validation}}
    res = FinetuneResult(model, card, classes, new_classes, result.history, steps, validation, base_validation,
                         seconds)
    if out is not None:
        if is_cancelled():
            raise Cancelled("cancelled")
        wpath, cpath = save_model(model, out, card)
        res.model_path, res.card_path = str(wpath), str(cpath)
        png, html = write_report(res, Path(str(cpath)[: -len(".json")]))
        res.report_png, res.report_html = str(png), str(html)
    progress(1.0)
    return res
