"""One call from labelled polygons to a saved, fine-tuned model: what the Processing algorithm,
the dock task and the command line share.

1. Windows under the polygons (``samples``) fine-tune the window head with the MoSAiC
   objective (``finetune``; on cached features when the encoders are frozen), a share of the
   polygons held out to validate it.
2. The pixels inside the polygons give the pixel head's training set (``pixels``: bands and the
   20 m encoder stage, read through the fine-tuned encoders); it is judged by cross-validation
   over whole polygons, then fitted on all of them (``pixel_training``).
3. The model file gets both heads; the card records the classes, the labels' hash and both
   validations; a report (PNG + HTML) shows them per class.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Sequence

from ..io.model_file import model_paths, read_card
from ..io.overwrite_guard import check_output_folder, check_outputs_spare_inputs, raster_path_files
from .finetune import Cancelled, FinetuneConfig, FinetuneResult, finetune, save_with_report
from .pixel_training import PixelHeadConfig, cross_validate, fit_pixel_head
from .pixels import extract_pixels
from .samples import (LabelledPolygon, extract_samples, label_hash, match_known_classes, split_by_polygon,
                      unlabelled_windows)
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


def pixel_class_list(classes: Sequence[str], polygons: Sequence[LabelledPolygon]) -> tuple[str, ...]:
    """The pixel map's classes: those the polygons name, in the model's class order."""
    used = {c for p in polygons for c in p.labels}
    return tuple(c for c in classes if c in used)


def _check_out_spares_inputs(base: str, out: str | Path, optical: str | None, sar: str | None,
                             label_source: dict[str, Any] | None) -> None:
    """ValueError when the new model or its report would be written over the base model, an input
    raster (or a file it reads) or the label file."""
    weights, card = model_paths(out)
    check_output_folder(card.parent)
    name = str(card)[: -len(".json")]
    reads = dict(zip(("base model's weights", "base model's card"), ([str(f)] for f in model_paths(base))))
    for what, path in (("optical raster", optical), ("SAR raster", sar)):
        if path:
            reads[what] = raster_path_files(path)
    label_file = str((label_source or {}).get("source") or "").split("|")[0]  # QGIS: "file.gpkg|layername=x"
    if label_file:
        reads["label file"] = [label_file]
    check_outputs_spare_inputs({"new model's weights": weights, "new model's card": card,
                                "report": f"{name}.report.png", "report page": f"{name}.report.html"}, reads)


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
    optical_offset: float | None = None,
    colors: dict[str, str] | None = None,
    scheme: Sequence[str] = (),
    label_source: dict[str, Any] | None = None,
    progress: Callable[[float], None] | None = None,
    is_cancelled: Callable[[], bool] | None = None,
    log: Callable[[str], None] | None = None,
) -> FinetuneResult:
    """Fine-tune ``base`` from the polygons (window head and a new pixel head) and save it to ``out``
    (NAME -> NAME.safetensors + NAME.json, NAME.report.png/.html).

    Raises:
        ValueError: bad inputs or labels (the message says what to change).
        Cancelled: cancelled; nothing written.
    """
    cfg = cfg or FinetuneConfig()
    progress = progress or (lambda f: None)
    is_cancelled = is_cancelled or (lambda: False)
    log = log or (lambda s: None)
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    card = read_card(base)
    _check_out_spares_inputs(base, out, optical, sar, label_source)
    polygons = match_known_classes(polygons, [c["name"] for c in card["classes"]] + list(scheme))
    classes = class_list([c["name"] for c in card["classes"]], polygons, scheme)
    pixel_classes = pixel_class_list(classes, polygons)
    scene = open_scene(card, optical, sar, optical_bands, sar_bands, sar_units, optical_offset)
    try:
        for w in scene.warnings:
            log(f"warning: {w}")
        try:
            samples = extract_samples(polygons, crs, scene, classes, cfg.windows_per_polygon, cfg.max_nodata,
                                      cfg.seed, progress=lambda f: progress(0.04 * f), is_cancelled=is_cancelled)
        except InterruptedError:
            raise Cancelled("cancelled") from None
        for w in samples.warnings:
            log(f"warning: {w}")
        if len(pixel_classes) < 2:
            raise ValueError(f"the polygons name one class only ({', '.join(pixel_classes)}): the pixel map chooses "
                             f"among the classes your polygons name, so label at least two (e.g. the class you "
                             f"want and what surrounds it)")
        log(f"{samples.counts['windows']} labelled windows from {samples.counts['polygons_used']} of "
            f"{samples.counts['polygons']} polygons; per class: "
            + ", ".join(f"{c}: {n}" for c, n in samples.per_class().items() if n))
        unl = unlabelled_windows(scene, limit=max(0, cfg.unlabelled), seed=cfg.seed) if cfg.unlabelled else {}
        timings["windows_read"] = time.perf_counter() - t0
        progress(0.05)
        train_idx, val_idx = split_by_polygon(samples, cfg.val_share, cfg.seed)
        if len(val_idx) == 0 and cfg.val_share > 0:
            log("no polygons held out for the window head: too few polygons per class to hold one out")
        t = time.perf_counter()
        result = finetune(base, samples.subset(train_idx), samples.subset(val_idx) if len(val_idx) else None, unl,
                          cfg, None, colors, progress=lambda f: progress(0.05 + 0.55 * f),
                          is_cancelled=is_cancelled, log=log)
        timings["window_head"] = time.perf_counter() - t
        t = time.perf_counter()
        try:
            pixels = extract_pixels(polygons, crs, scene, result.model, pixel_classes, cfg.pixel_levels, cfg.seed,
                                    progress=lambda f: progress(0.6 + 0.1 * f), is_cancelled=is_cancelled)
        except InterruptedError:
            raise Cancelled("cancelled") from None
        timings["pixels_read"] = time.perf_counter() - t
    finally:
        scene.close()
    for w in pixels.warnings:
        log(f"warning: {w}")
    mods = tuple(pixels.feats)
    dims = result.model.pixel_level_dims(mods, cfg.pixel_levels)
    strides = result.model.encoders[mods[0]].level_strides[: cfg.pixel_levels]
    pcfg = PixelHeadConfig(hidden=cfg.pixel_hidden, steps=cfg.pixel_steps, seed=cfg.seed)
    log(f"pixel head: {len(pixels)} pixels of {pixels.counts['polygons_used']} polygons; per class: "
        + ", ".join(f"{c}: {n} px in {pixels.polygons_per_class()[c]} polygon(s)"
                    for c, n in pixels.pixels_per_class().items()))
    t = time.perf_counter()
    try:
        validation = cross_validate(pixels, dims, strides, pcfg, cfg.folds, cfg.seed, is_cancelled,
                                    progress=lambda f: progress(0.7 + 0.2 * f))
        timings["pixel_cross_validation"] = time.perf_counter() - t
        t = time.perf_counter()
        head = fit_pixel_head(pixels, dims, strides, pcfg, is_cancelled)
        timings["pixel_head"] = time.perf_counter() - t
    except InterruptedError:
        raise Cancelled("cancelled") from None
    model = result.model
    model.attach_pixel_head(head, pixel_classes, mods, cfg.pixel_hidden, cfg.pixel_levels)
    out_card = result.card
    window_colors = {c["name"]: c.get("color", "#808080") for c in out_card.get("classes", [])}
    out_card["pixel_classes"] = [{"name": c, "color": window_colors.get(c, "#808080")} for c in pixel_classes]
    out_card["training"].update({
        "labels": {"hash": label_hash(polygons, crs), "crs": crs, "polygons": len(polygons), **(label_source or {})},
        "scene": {"optical": Path(optical).name if optical else None, "sar": Path(sar).name if sar else None},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "pixel_head": {"config": pcfg.to_dict(), "levels": cfg.pixel_levels, "modalities": list(mods),
                       "pixels": pixels.pixels_per_class(), "polygons": pixels.polygons_per_class(),
                       "counts": pixels.counts},
    })
    out_card["metrics"]["pixel_cross_validation"] = validation
    timings["total"] = time.perf_counter() - t0
    out_card["training"]["timings_s"] = {k: round(v, 2) for k, v in timings.items()}
    result.pixel_classes, result.pixel_validation, result.timings = pixel_classes, validation, timings
    result.card, result.seconds = out_card, timings["total"]
    if is_cancelled():
        raise Cancelled("cancelled")
    save_with_report(result, out)
    progress(1.0)
    return result
