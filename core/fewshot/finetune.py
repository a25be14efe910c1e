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
from ..io.temporaries import job_folder
from ..models.mosaic import ModelConfig, MosaicModel
from ..train.config import TrainConfig
from ..train.loop import train
from .cached_training import cached_view_features, train_heads_cached
from .pixel_training import MIN_POLYGONS
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
    cached_views: int = 4  # head only: augmented views per window encoded once (cached_training.py)
    # the pixel head (pixel_training.py): cross-validation folds over polygons, hidden units,
    # encoder stages read besides the bands, optimisation steps
    folds: int = 5
    pixel_hidden: int = 32
    pixel_levels: int = 1
    pixel_steps: int = 300

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
    pixel_classes: tuple[str, ...] = ()
    pixel_validation: dict[str, Any] | None = None  # cross-validated over polygons (pixel_training.cross_validate)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage

    def summary(self) -> str:
        """What an analyst reads first: the new classes and the honest validation figures."""
        lines = [f"new classes: {', '.join(self.new_classes) or 'none'}"]
        pv = self.pixel_validation
        if pv:
            lines.append(pixel_summary(pv))
        lines.append(window_summary(self.validation))
        return "\n".join(lines)


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}"


def pixel_summary(pv: dict[str, Any]) -> str:
    """One line per class of the pixel map's cross-validated figures, 'too few to judge' where so."""
    head = (f"fine map, {pv['folds']}-fold cross-validation over {pv['polygons']} polygons ({pv['pixels']} pixels): "
            f"accuracy {_pct(pv['accuracy'])} %, macro F1 {_pct(pv['f1_macro'])} % over "
            f"{len(pv['f1_macro_over'])} class(es)")
    rows = []
    for c, v in pv["per_class"].items():
        rows.append(f"  {c}: {v['polygons']} polygons, {v['pixels']} px: " +
                    (f"F1 {_pct(v['f1'])} %, recall {_pct(v['recall'])} %" if v["judged"] else v["why"]))
    return "\n".join([head, *rows])


def window_summary(validation: dict[str, Any] | None) -> str:
    """The window head's validation on held-out polygons, or why there is none."""
    if not validation:
        return "window outputs: no held-out polygons (too few polygons per class to hold one out)"
    judged = validation.get("judged_classes", [])
    if not judged:
        return (f"window outputs: {validation['n_samples']} held-out windows from {validation.get('polygons', '?')} "
                f"polygons: too few to judge (no class has {MIN_POLYGONS} held-out polygons and windows without it)")
    return (f"window outputs: AP macro {_pct(validation.get('ap_macro_judged'))} % over {', '.join(judged)} "
            f"({validation['n_samples']} windows of {validation.get('polygons', '?')} held-out polygons)")

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


def judge_windows(metrics: dict[str, Any], samples: SampleSet, classes: Sequence[str]) -> dict[str, Any]:
    """``metrics`` with the honesty rule of the validation: a class is judged only where at least
    ``MIN_POLYGONS`` held-out polygons hold it and some held-out windows do not (else its AP says
    nothing: 8 windows of one class give AP 100). Adds the held-out polygons per class, the judged
    classes and the AP macro over them."""
    out = dict(metrics)
    per_class = {}
    judged = []
    for k, c in enumerate(classes):
        pos = samples.labels[:, k] > 0
        polys = int(len(np.unique(samples.polygon[pos])))
        if not pos.any():
            continue
        ok = polys >= MIN_POLYGONS and (~pos).any()
        per_class[c] = {"polygons": polys, "windows": int(pos.sum()), "judged": bool(ok),
                        **({} if ok else {"why": f"too few to judge ({polys} held-out polygon(s)"
                                                 f"{'' if (~pos).any() else ', and no window without it'})"})}
        if ok:
            judged.append(c)
    aps = [metrics["per_class_ap"][c] for c in judged if metrics["per_class_ap"].get(c) is not None]
    out.update(polygons=int(len(np.unique(samples.polygon))), per_class_judged=per_class, judged_classes=judged,
               ap_macro_judged=float(np.mean(aps)) if aps else None)
    return out


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
    """Fine-tune the window head of the model ``base`` on ``train_set`` (its classes = the new model's).

    Head only (``cfg.train_parts == 'head'``): on cached encoder features (``cached_training``);
    otherwise with ``train.loop.train`` (the last encoder stages learn too). Writes ``out``
    (NAME -> NAME.safetensors + NAME.json) and the report beside it when ``out`` is given;
    nothing is written when cancelled or on error.
    """
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
    mods = tuple(m for m in ("s2", "s1") if (train_set.s2 if m == "s2" else train_set.s1) is not None)
    n_unl = len(next(iter(unlabelled.values()))) if unlabelled else 0
    n_all = len(train_set) + n_unl
    batch = max(2, min(cfg.batch_size, n_all))
    steps: list[dict[str, float]] = []
    total = cfg.epochs * -(-n_all // batch)
    cached = cfg.train_parts == "head"

    def on_step(st: dict[str, float]) -> None:
        steps.append(dict(st))
        progress((0.3 if cached else 0.0) + (0.7 if cached else 1.0) * min(1.0, st["step"] / max(1, total)))
        if is_cancelled():
            raise Cancelled("cancelled")

    tcfg = TrainConfig(
        objective="mosaic", weights=dict(cfg.weights), tau=cfg.tau, modalities=mods, epochs=cfg.epochs,
        batch_size=batch, lr=cfg.lr, warmup_epochs=0, seed=cfg.seed, device=cfg.device, augment=cfg.augment,
        train_parts=cfg.train_parts, threads=cfg.threads, progress=False, batchnorm="local",
        modality_dropout=0.2 if len(mods) == 2 else 0.0,
    )
    if cached:
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        images = {m: np.concatenate([getattr(train_set, m)] + ([unlabelled[m]] if n_unl else [])) for m in mods}
        log(f"encoding {n_all} windows ({len(train_set)} labelled, {n_unl} unlabelled) in "
            f"{cfg.cached_views if cfg.augment else 1} view(s) once; training the heads on the cached features")
        views = cfg.cached_views if cfg.augment else 1
        try:
            feats = cached_view_features(base_model, images, views, cfg.seed, cfg.augment, is_cancelled=is_cancelled)
            plain = cached_view_features(base_model, {m: getattr(train_set, m) for m in mods}, 1, cfg.seed, False,
                                         is_cancelled=is_cancelled) if cfg.imprint and new_classes else None
        except InterruptedError:
            raise Cancelled("cancelled") from None
        if views < 2:
            feats = {m: torch.cat([f, f], dim=1) for m, f in feats.items()}
        progress(0.3)
        imprint = {m: f[:, 0].numpy() for m, f in plain.items()} if plain is not None else None
        model, card = extend_model(base_model, base_card, classes, colors, imprint, train_set.labels)
        labels = np.concatenate([train_set.labels, np.zeros((n_unl, len(classes)), np.float32)])
        labelled = np.concatenate([np.ones(len(train_set), bool), np.zeros(n_unl, bool)])
        history = train_heads_cached(model, feats, labels, labelled, tcfg.loss_weights(), cfg.epochs, batch, cfg.lr,
                                     tcfg.weight_decay, cfg.tau, cfg.seed, tcfg.modality_dropout, on_step)
    else:
        feats = _features(base_model, train_set.s2, train_set.s1) if cfg.imprint and new_classes else None
        model, card = extend_model(base_model, base_card, classes, colors, feats, train_set.labels)
        parts: list[torch.utils.data.Dataset] = [ArrayPatches(train_set.s2, train_set.s1, train_set.labels, classes)]
        if n_unl:
            parts.append(ArrayPatches(unlabelled.get("s2"), unlabelled.get("s1"), None, classes, labelled=False))
        log(f"training on {len(train_set)} labelled + {n_unl} unlabelled windows, {cfg.epochs} epochs, "
            f"batch {batch}, parts '{cfg.train_parts}'")
        with job_folder("finetune") as tmp:
            init = Path(tmp) / "init"
            save_model(model, init, card)
            tcfg.out, tcfg.init = str(Path(tmp) / "run"), str(init)
            result = train(tcfg, PooledPatches(parts), on_step)
        history, model = result.history, result.model
    model = model.cpu().eval()
    validation = base_validation = None
    if val_set is not None and len(val_set):
        validation = judge_windows(_metrics(model, val_set, classes)[0], val_set, classes)
        kidx = [classes.index(c) for c in known]
        base_val = val_set.subset(np.arange(len(val_set)))
        base_val.labels = val_set.labels[:, kidx]
        base_val.classes = tuple(known)
        base_validation = judge_windows(_metrics(base_model, base_val, known)[0], base_val, known)
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
        "history": history,
        "cached_features": cached,
        "seconds": round(seconds, 1),
        **(provenance or {}),
    }
    card["metrics"] = {"validation": {"metrics": validation}, "validation_base_model": {"metrics": base_validation}}
    res = FinetuneResult(model, card, classes, new_classes, history, steps, validation, base_validation, seconds)
    if out is not None:
        if is_cancelled():
            raise Cancelled("cancelled")
        save_with_report(res, out)
    progress(1.0)
    return res


def save_with_report(res: FinetuneResult, out: str | Path) -> None:
    """Write ``res.model`` with ``res.card`` to ``out`` (NAME.safetensors + NAME.json) and the report
    beside it; the paths go into ``res``."""
    from .report import write_report  # matplotlib only when a report is written

    wpath, cpath = save_model(res.model, out, res.card)
    res.model_path, res.card_path = str(wpath), str(cpath)
    png, html = write_report(res, Path(str(cpath)[: -len(".json")]))
    res.report_png, res.report_html = str(png), str(html)
