"""One call from labelled polygons to a saved, fine-tuned model: what the Processing
algorithm, the dock task and a script share."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Sequence

from ..io.model_file import read_card
from .finetune import Cancelled, FinetuneConfig, FinetuneResult, finetune
from .samples import LabelledPolygon, extract_samples, label_hash, split_by_polygon, unlabelled_windows
from .scene import open_scene


def class_list(base_classes: Sequence[str], polygons: Sequence[LabelledPolygon],
               scheme: Sequence[str] = ()) -> tuple[str, ...]:
    """The base classes, then new ones: the scheme's (in its order) that polygons use, then any other label."""
    out = list(base_classes)
    used = {c for p in polygons for c in p.labels}
    for c in list(scheme) + [c for p in polygons for c in p.labels]:
        if c not in out and c in used:
            out.append(c)
    return tuple(out)


def finetune_from_polygons(
    base: str,
    polygons: Sequence[LabelledPolygon],
    crs: str,
    optical: str | None,
    sar: str | None,
    out: str | Path,
    cfg: FinetuneConfig | None = None,
    optical_bands: Sequence[str] | str | None = None,
    sar_bands: Sequence[str] | str | None = None,
    sar_units: str = "auto",
    colors: dict[str, str] | None = None,
    scheme: Sequence[str] = (),
    label_source: dict[str, Any] | None = None,
    progress: Callable[[float], None] | None = None,
    is_cancelled: Callable[[], bool] | None = None,
    log: Callable[[str], None] | None = None,
) -> FinetuneResult:
    """Extract windows, split by polygon, fine-tune ``base`` and save to ``out`` with its report.

    Raises:
        ValueError: bad inputs or labels (the message says what to change).
        Cancelled: cancelled; nothing written.
    """
    cfg = cfg or FinetuneConfig()
    progress = progress or (lambda f: None)
    is_cancelled = is_cancelled or (lambda: False)
    log = log or (lambda s: None)
    card = read_card(base)
    classes = class_list([c["name"] for c in card["classes"]], polygons, scheme)
    scene = open_scene(card, optical, sar, optical_bands, sar_bands, sar_units)
    try:
        for w in scene.warnings:
            log(f"warning: {w}")
        try:
            samples = extract_samples(polygons, crs, scene, classes, cfg.windows_per_polygon, cfg.max_nodata,
                                      cfg.seed, progress=lambda f: progress(0.08 * f), is_cancelled=is_cancelled)
        except InterruptedError:
            raise Cancelled("cancelled") from None
        for w in samples.warnings:
            log(f"warning: {w}")
        log(f"{samples.counts['windows']} labelled windows from {samples.counts['polygons_used']} of "
            f"{samples.counts['polygons']} polygons; per class: "
            + ", ".join(f"{c}: {n}" for c, n in samples.per_class().items() if n))
        unl = unlabelled_windows(scene, limit=max(0, cfg.unlabelled), seed=cfg.seed) if cfg.unlabelled else {}
        progress(0.1)
    finally:
        scene.close()
    train_idx, val_idx = split_by_polygon(samples, cfg.val_share, cfg.seed)
    if len(val_idx) == 0 and cfg.val_share > 0:
        log("no validation polygons: too few polygons per class to hold one out; validation figures are missing")
    provenance = {"labels": {"hash": label_hash(polygons, crs), "crs": crs, "polygons": len(polygons),
                             **(label_source or {})},
                  "scene": {"optical": Path(optical).name if optical else None,
                            "sar": Path(sar).name if sar else None},
                  "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    result = finetune(base, samples.subset(train_idx), samples.subset(val_idx) if len(val_idx) else None, unl, cfg,
                      out, colors, provenance, progress=lambda f: progress(0.1 + 0.88 * f),
                      is_cancelled=is_cancelled, log=log)
    progress(1.0)
    return result
