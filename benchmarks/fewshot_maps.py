"""Few-shot maps from hand-drawn polygons on real scenes (not a test): what an analyst gets from each
method, measured on polygons it was not trained on, in one run.

Scenes and labels: the Spain S1+S2 scene (Sen1Floods11, L1C + GRD) and the Germany winter L1C scene
(optical only), with the polygons of resources/sample/labels/ (drawn by eye, see its README).

Methods, all fitted on the same training polygons:
- fine map: the pixel head on the bands + the encoders' 20 m stage (what ``finetune`` adds and
  ``classify --fine-*`` writes), base encoders frozen (head-only fine-tuning leaves them as they are);
- bands MLP: the same head on the bands alone (what the encoder stage adds);
- window map: the window head fine-tuned on windows under the polygons (head-only, cached), then the
  engine's window probabilities at each pixel's 160 m cell, the most probable of the polygons' classes;
- random forest on the raw bands (200 trees, balanced classes): what Semi-Automatic Classification
  Plugin and dzetsaka users fit on their training polygons;
- NDWI > 0 for the water class (no training at all).

Protocols (per-pixel accuracy and macro F1 over the held-out polygons' pixels):
- k-fold over polygons (5 folds, stratified by class), 3 seeds;
- few polygons: 2 polygons per class drawn at random (10 repeats), tested on all the others.

Also: the time of each method's fit on all polygons, the whole ``finetune_from_polygons`` on the
"quick" polygons (the labelling loop's first pass), and full-scene maps of each method side by side
(PNG). Results: docs/fewshot/maps_results.json and docs/fewshot/maps_<scene>.png.

Run from the repository root:  PYTHONPATH=. .venv/bin/python benchmarks/fewshot_maps.py [--quick]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.engine import SceneRequest, run_scene  # noqa: E402
from core.engine.cli import stack_inputs  # noqa: E402
from core.fewshot import FinetuneConfig, finetune_from_polygons  # noqa: E402
from core.fewshot.finetune import finetune  # noqa: E402
from core.fewshot.label_file import read_label_file  # noqa: E402
from core.fewshot.pipeline import class_list  # noqa: E402
from core.fewshot.pixel_training import (PixelHeadConfig, fit_pixel_head, pixel_scores, polygon_folds,  # noqa: E402
                                         predict_pixels)
from core.fewshot.pixels import extract_pixels  # noqa: E402
from core.fewshot.samples import extract_samples, unlabelled_windows  # noqa: E402
from core.fewshot.scene import open_scene  # noqa: E402
from core.io.model_file import load_model, save_model  # noqa: E402

MODEL = str(ROOT / "resources" / "models" / "mosaic-small-ben19")
SAMPLE = ROOT / "resources" / "sample"
OUT = ROOT / "docs" / "fewshot"
SCENES = {
    "spain": dict(optical=[str(SAMPLE / "spain" / "Spain_7370579_S2Hand.tif")],
                  sar=[str(SAMPLE / "spain" / "Spain_7370579_S1Hand.tif")], water="Flood water"),
    "germany": dict(optical=sorted(str(p) for p in (SAMPLE / "germany").glob("*_B*.jp2")), sar=None,
                    water="Inland waters"),
}
S2_13 = "S2-13"
B03, B08 = 2, 7  # indices of B03 and B08 in the model's 12 optical bands


def scores(labels, probs, polygon, classes) -> dict:
    s = pixel_scores(labels, probs, polygon, classes)
    return {k: s[k] for k in ("accuracy", "f1_macro", "f1_macro_over", "per_class", "pixels", "polygons")}


def scored(labels, probs, polygon, classes) -> dict:
    """Scores over every held-out pixel (a pixel without an output counts as wrong), the share of
    pixels with an output, and the accuracy over those alone."""
    covered = np.isfinite(probs).all(1)
    s = scores(labels, np.nan_to_num(probs, nan=-1.0), polygon, classes)
    s["coverage"] = float(covered.mean())
    s["accuracy_covered"] = scores(labels[covered], probs[covered], polygon[covered], classes)["accuracy"] \
        if covered.any() else None
    return s


def one_hot(pred: np.ndarray, k: int) -> np.ndarray:
    out = np.zeros((len(pred), k), np.float32)
    out[np.arange(len(pred)), pred] = 1
    return out


class Scene:
    """A scene, its polygons and everything the methods share (pixels read and encoded once)."""

    def __init__(self, name: str, tmp: Path) -> None:
        cfg = SCENES[name]
        self.name, self.water = name, cfg["water"]
        self.optical = stack_inputs(cfg["optical"], str(tmp), f"{name}_optical")
        self.sar = stack_inputs(cfg["sar"], str(tmp), f"{name}_sar") if cfg["sar"] else None
        labels = SAMPLE / "labels" / f"{name}_polygons.geojson"
        self.polygons, self.crs = read_label_file(labels)
        self.quick = [p for p, f in zip(self.polygons, json.loads(labels.read_text())["features"])
                      if f["properties"]["quick"]]
        self.model, self.card = load_model(MODEL)
        self.window_classes = class_list([c["name"] for c in self.card["classes"]], self.polygons)
        self.classes = tuple(c for c in self.window_classes if any(c in p.labels for p in self.polygons))
        self.readers = open_scene(self.card, self.optical, self.sar, S2_13)
        self.grid = self.readers.grid
        t = time.perf_counter()
        self.pixels = extract_pixels(self.polygons, self.crs, self.readers, self.model, self.classes, 1, seed=0)
        self.extract_seconds = time.perf_counter() - t
        self.mods = tuple(self.pixels.feats)
        self.dims = self.model.pixel_level_dims(self.mods, 1)
        self.strides = self.model.encoders[self.mods[0]].level_strides[:1]
        self.nb = {m: self.dims[m][0] for m in self.mods}
        self.windows = extract_samples(self.polygons, self.crs, self.readers, self.window_classes, 8, 0.5, 0)
        self.unlabelled = unlabelled_windows(self.readers, 64, seed=0)

    def bands(self, ps) -> np.ndarray:
        """The normalised bands of each pixel, every modality: the raw bands up to an affine map per band."""
        return np.concatenate([ps.feats[m][:, : self.nb[m]] for m in self.mods], 1)

    def close(self) -> None:
        self.readers.close()


# --------------------------------------------------------------------------- methods: fit(train) -> predict(test)

def fine_map(sc: Scene, train, test, seed: int) -> np.ndarray:
    return predict_pixels(fit_pixel_head(train, sc.dims, sc.strides, PixelHeadConfig(seed=seed)), test)


def bands_mlp(sc: Scene, train, test, seed: int) -> np.ndarray:
    def cut(ps):
        q = ps.subset(np.arange(len(ps)))
        q.feats = {m: f[:, : sc.nb[m]] for m, f in ps.feats.items()}
        return q
    dims = {m: (sc.nb[m],) for m in sc.mods}
    return predict_pixels(fit_pixel_head(cut(train), dims, (), PixelHeadConfig(seed=seed, context_mix=0.0)), cut(test))


def random_forest(sc: Scene, train, test, seed: int) -> np.ndarray:
    from sklearn.ensemble import RandomForestClassifier

    rf = RandomForestClassifier(n_estimators=200, n_jobs=-1, random_state=seed, class_weight="balanced")
    rf.fit(sc.bands(train), train.labels.argmax(1))
    out = np.zeros((len(test), len(sc.classes)), np.float32)
    out[:, rf.classes_] = rf.predict_proba(sc.bands(test))
    return out


def window_map(sc: Scene, train, test, seed: int, tmp: Path) -> np.ndarray:
    """Window head fine-tuned on the windows of the training polygons; the engine's window
    probabilities at each test pixel's cell, restricted to the polygons' classes (no output: NaN)."""
    polys = np.unique(train.polygon)
    idx = np.flatnonzero(np.isin(sc.windows.polygon, polys))
    res = finetune(MODEL, sc.windows.subset(idx), None, sc.unlabelled, FinetuneConfig(seed=seed, val_share=0.0))
    path = tmp / f"window-{sc.name}-{seed}"
    save_model(res.model, path, res.card)
    out = tmp / f"window-{sc.name}-{seed}.tif"
    run_scene(SceneRequest(model=str(path), optical=sc.optical, sar=sc.sar, optical_bands=[S2_13],
                           probability_dtype="float32", outputs={"probabilities": str(out)}))
    with rasterio.open(out) as ds:
        p = ds.read()
    keep = [list(res.classes).index(c) for c in sc.classes]
    cells = test.pix // 16
    return p[keep][:, cells[:, 0], cells[:, 1]].T


def ndwi_water(sc: Scene, ps) -> np.ndarray:
    """True where NDWI = (B03 - B08) / (B03 + B08) > 0, from the raw optical bands of each pixel."""
    mean = np.asarray(sc.card["inputs"]["s2"]["mean"], np.float32)
    std = np.asarray(sc.card["inputs"]["s2"]["std"], np.float32)
    raw = ps.feats["s2"][:, :12] * std + mean
    return (raw[:, B03] - raw[:, B08]) / np.maximum(raw[:, B03] + raw[:, B08], 1e-6) > 0


# --------------------------------------------------------------------------- protocols

def kfold(sc: Scene, methods: dict, seeds, folds: int = 5) -> dict:
    ps = sc.pixels
    out: dict[str, list] = {name: [] for name in methods}
    for seed in seeds:
        parts = polygon_folds(ps, folds, seed)
        probs = {name: np.full((len(ps), len(sc.classes)), np.nan, np.float32) for name in methods}
        for held in parts:
            test = np.isin(ps.polygon, held)
            tr, te = ps.subset(np.flatnonzero(~test)), ps.subset(np.flatnonzero(test))
            for name, fn in methods.items():
                probs[name][test] = fn(sc, tr, te, seed)
        for name in methods:
            out[name].append(scored(ps.labels, probs[name], ps.polygon, sc.classes))
        print(f"  {sc.name} k-fold seed {seed}: " + ", ".join(
            f"{n} {100 * out[n][-1]['accuracy']:.1f}" for n in methods), flush=True)
    return out


def few_polygons(sc: Scene, methods: dict, per_class: int = 2, repeats: int = 10) -> dict:
    ps = sc.pixels
    first = {int(q): int(ps.labels[np.flatnonzero(ps.polygon == q)[0]].argmax()) for q in np.unique(ps.polygon)}
    rng = np.random.default_rng(123)
    out: dict[str, list] = {name: [] for name in methods}
    for r in range(repeats):
        chosen = []
        for c in range(len(sc.classes)):
            members = [q for q, k in first.items() if k == c]
            if len(members) > per_class:  # a class with too few polygons to hold any out is left out
                chosen += list(rng.choice(members, per_class, replace=False))
        tested = [q for q, k in first.items() if sum(v == k for v in first.values()) > per_class]
        tr = np.isin(ps.polygon, chosen)
        te = ~tr & np.isin(ps.polygon, tested)
        for name, fn in methods.items():
            p = fn(sc, ps.subset(np.flatnonzero(tr)), ps.subset(np.flatnonzero(te)), r)
            out[name].append(scored(ps.labels[te], p, ps.polygon[te], sc.classes))
    return out


def water_check(sc: Scene, seeds, folds: int = 5) -> dict:
    """Water vs the rest on held-out pixels: NDWI > 0 against the fine map's water class (k-fold)."""
    ps = sc.pixels
    w = sc.classes.index(sc.water)
    truth = ps.labels[:, w] > 0
    from sklearn.metrics import f1_score

    fine_f1 = []
    for seed in seeds:
        pred = np.zeros(len(ps), bool)
        for held in polygon_folds(ps, folds, seed):
            test = np.isin(ps.polygon, held)
            p = fine_map(sc, ps.subset(np.flatnonzero(~test)), ps.subset(np.flatnonzero(test)), seed)
            pred[test] = p.argmax(1) == w
        fine_f1.append(f1_score(truth, pred))
    nd = ndwi_water(sc, ps)
    return {"class": sc.water, "ndwi_f1": float(f1_score(truth, nd)), "ndwi_accuracy": float((nd == truth).mean()),
            "fine_f1": float(np.mean(fine_f1)), "pixels_water": int(truth.sum()), "pixels": int(len(truth))}


def summarise(runs: list[dict]) -> dict:
    acc = [r["accuracy"] for r in runs]
    f1 = [r["f1_macro"] for r in runs if r["f1_macro"] is not None]
    per_class = {}
    for c in runs[0]["per_class"]:
        vals = [r["per_class"][c].get("f1") for r in runs if r["per_class"].get(c, {}).get("judged")]
        per_class[c] = None if not vals else float(np.mean(vals))
    cov = [r["accuracy_covered"] for r in runs if r["accuracy_covered"] is not None]
    return {"accuracy": float(np.mean(acc)), "accuracy_sd": float(np.std(acc)), "f1_macro": float(np.mean(f1)),
            "f1_macro_sd": float(np.std(f1)), "coverage": float(np.mean([r["coverage"] for r in runs])),
            "accuracy_where_given": float(np.mean(cov)) if cov else None,
            "per_class_f1": per_class, "runs": len(runs)}


# --------------------------------------------------------------------------- timing and maps

def fit_times(sc: Scene, tmp: Path) -> dict:
    """Seconds to fit each method on all polygons (after reading), and the whole pipeline on the quick set."""
    ps, t = sc.pixels, {}
    for name, fn in (("fine map", fine_map), ("bands MLP", bands_mlp), ("random forest", random_forest)):
        t0 = time.perf_counter()
        fn(sc, ps, ps.subset(np.arange(1)), 0)
        t[name] = time.perf_counter() - t0
    t0 = time.perf_counter()
    finetune(MODEL, sc.windows, None, sc.unlabelled, FinetuneConfig(val_share=0.0))
    t["window map (head-only, cached)"] = time.perf_counter() - t0
    t["reading + encoding the polygons' pixels"] = sc.extract_seconds
    t0 = time.perf_counter()
    res = finetune_from_polygons(MODEL, sc.quick, sc.crs, sc.optical, sc.sar, tmp / f"quick-{sc.name}",
                                 FinetuneConfig(), optical_bands=S2_13)
    t["whole finetune, quick polygons"] = time.perf_counter() - t0
    t["whole finetune, quick polygons: stages"] = {k: round(v, 2) for k, v in res.timings.items()}
    t["quick polygons"] = len(sc.quick)
    return t


def scene_maps(sc: Scene, tmp: Path) -> dict[str, np.ndarray]:
    """Each method fitted on all polygons, applied to the whole scene: class index per pixel (255: none)."""
    res = finetune_from_polygons(MODEL, sc.polygons, sc.crs, sc.optical, sc.sar, tmp / f"all-{sc.name}",
                                 FinetuneConfig(), optical_bands=S2_13)
    outs = {"fine": str(tmp / f"{sc.name}_fine.tif"), "win": str(tmp / f"{sc.name}_win.tif")}
    run_scene(SceneRequest(model=res.card_path, optical=sc.optical, sar=sc.sar, optical_bands=[S2_13],
                           probability_dtype="float32",
                           outputs={"fine_classes": outs["fine"], "probabilities": outs["win"]}))
    maps = {}
    with rasterio.open(outs["fine"]) as ds:
        maps["fine map (pixel head)"] = ds.read(1)
    H, W = maps["fine map (pixel head)"].shape
    with rasterio.open(outs["win"]) as ds:
        p = ds.read()
    keep = [list(res.classes).index(c) for c in sc.classes]
    win = np.where(np.isfinite(p[keep]).all(0), np.nan_to_num(p[keep]).argmax(0), 255).astype(np.uint8)
    maps["window map"] = np.kron(win, np.ones((16, 16), np.uint8))[:H, :W]
    raw = {m: sc.readers.read(m, 0, 0, H, W) for m in sc.mods}
    valid = np.logical_and.reduce([np.isfinite(a).all(0) for a in raw.values()])
    x = np.concatenate([sc.readers.normalise({m: raw[m]})[m].reshape(sc.nb[m], -1).T for m in sc.mods], 1)
    from sklearn.ensemble import RandomForestClassifier

    rf = RandomForestClassifier(n_estimators=200, n_jobs=-1, random_state=0, class_weight="balanced")
    rf.fit(sc.bands(sc.pixels), sc.pixels.labels.argmax(1))
    maps["random forest (bands)"] = np.where(valid, rf.predict(x).reshape(H, W), 255).astype(np.uint8)
    b3, b8 = raw["s2"][B03], raw["s2"][B08]
    water = (b3 - b8) / np.maximum(b3 + b8, 1e-6) > 0
    maps["NDWI > 0 (water)"] = np.where(valid, np.where(water, sc.classes.index(sc.water), 254), 255).astype(np.uint8)
    maps["_rgb"] = raw["s2"][[3, 2, 1]]
    return maps


def render(sc: Scene, maps: dict, path: Path, crop: tuple[int, int, int] | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch, Rectangle

    colors = {c["name"]: c.get("color", "#808080") for c in sc.card["classes"]}
    palette = ["#e6004d", "#ffffa8", "#f2a64d", "#4d4dff", "#00a600", "#80f2e6", "#a6a6ff"]
    cols = [colors.get(c) if colors.get(c) not in (None, "#808080") else palette[i % len(palette)]
            for i, c in enumerate(sc.classes)]
    from matplotlib.colors import to_rgb

    lut = np.zeros((256, 3))
    lut[: len(cols)] = [to_rgb(c) for c in cols]
    lut[254] = (0.85, 0.85, 0.85)  # 'not water'
    lut[255] = (1, 1, 1)
    rgb = maps["_rgb"].astype(np.float32)  # each band stretched over its 2-98 % range (hazy winter L1C)
    lo = np.nanpercentile(rgb, 2, axis=(1, 2))[:, None, None]
    hi = np.nanpercentile(rgb, 98, axis=(1, 2))[:, None, None]
    rgb = np.nan_to_num(np.clip((rgb - lo) / (hi - lo), 0, 1)).transpose(1, 2, 0)
    r0, c0, n = crop or (0, 0, max(rgb.shape[:2]))
    sl = (slice(r0, r0 + n), slice(c0, c0 + n))
    names = [k for k in maps if not k.startswith("_")]
    fig = Figure(figsize=(4.2 * (len(names) + 1), 4.8 if crop else 4.2 * rgb.shape[0] / rgb.shape[1] + 0.6), dpi=90)
    axes = fig.subplots(1, len(names) + 1)
    axes[0].imshow(rgb[sl])
    axes[0].set_title("Sentinel-2 true colour + polygons", fontsize=9)
    pix, own = sc.pixels.pix, sc.pixels.polygon
    for qid in np.unique(own):
        pts = pix[own == qid]
        (a, b), (c, d) = pts.min(0), pts.max(0)
        k = int(sc.pixels.labels[own == qid][0].argmax())
        axes[0].add_patch(Rectangle((b - c0 - 0.5, a - r0 - 0.5), d - b + 1, c - a + 1, fill=False, lw=1,
                                    edgecolor=cols[k]))
    for ax, name in zip(axes[1:], names):
        ax.imshow(lut[maps[name][sl]], interpolation="nearest")
        ax.set_title(name, fontsize=9)
    for ax in axes:
        ax.set_axis_off()
    fig.legend(handles=[Patch(color=c, label=n) for c, n in zip(cols, sc.classes)], loc="lower center",
               ncol=len(cols), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 seed, 3 few-polygon repeats, no window map in k-fold")
    ap.add_argument("--scenes", nargs="+", default=list(SCENES), choices=list(SCENES))
    ap.add_argument("--maps-only", action="store_true", help="only the maps (PNG); no scores, no JSON")
    ap.add_argument("--out", default=str(OUT))
    a = ap.parse_args()
    torch.manual_seed(0)
    seeds = (0,) if a.quick else (0, 1, 2)
    results = {"threads": torch.get_num_threads(), "seeds": list(seeds), "scenes": {}}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mosaic-fewshot-maps-") as d:
        tmp = Path(d)
        for name in a.scenes:
            print(f"{name}: reading and encoding the polygons' pixels", flush=True)
            sc = Scene(name, tmp)
            try:
                methods = {"fine map": fine_map, "bands MLP": bands_mlp, "random forest": random_forest}
                with_window = dict(methods)
                if not a.quick:
                    with_window["window map"] = lambda s, tr, te, seed: window_map(s, tr, te, seed, tmp)
                r = {"classes": list(sc.classes), "pixels": sc.pixels.pixels_per_class(),
                     "polygons": sc.pixels.polygons_per_class()}
                if a.maps_only:
                    maps = scene_maps(sc, tmp)
                    render(sc, maps, out / f"maps_{name}.png")
                    h, w = maps["fine map (pixel head)"].shape
                    render(sc, maps, out / f"maps_{name}_zoom.png", (h // 4, w // 4, min(h, w) // 2))
                    continue
                r["kfold"] = {k: summarise(v) for k, v in kfold(sc, with_window, seeds).items()}
                few = dict(methods)
                if not a.quick:
                    few["window map"] = lambda s, tr, te, seed: window_map(s, tr, te, seed, tmp)
                r["two_polygons_per_class"] = {k: summarise(v) for k, v in
                                               few_polygons(sc, few, repeats=3 if a.quick else 10).items()}
                r["water"] = water_check(sc, seeds)
                r["fit_seconds"] = fit_times(sc, tmp)
                maps = scene_maps(sc, tmp)
                render(sc, maps, out / f"maps_{name}.png")
                h, w = maps["fine map (pixel head)"].shape
                render(sc, maps, out / f"maps_{name}_zoom.png", (h // 4, w // 4, min(h, w) // 2))
                results["scenes"][name] = r
            finally:
                sc.close()
            print(json.dumps({k: v for k, v in r.items() if k in ("kfold", "two_polygons_per_class", "water")},
                             indent=1, default=float)[:4000], flush=True)
    if not a.maps_only:
        (out / "maps_results.json").write_text(json.dumps(results, indent=1))
        print(table(results))


def table(results: dict) -> str:
    lines = []
    for name, r in results["scenes"].items():
        lines.append(f"\n{name}: {sum(r['polygons'].values())} polygon-class pairs, "
                     f"{sum(r['pixels'].values())} pixels")
        for proto in ("kfold", "two_polygons_per_class"):
            lines.append(f"  {proto}:")
            for m, s in r[proto].items():
                lines.append(f"    {m:15s} accuracy {100 * s['accuracy']:5.1f} ± {100 * s['accuracy_sd']:4.1f}  "
                             f"macro F1 {100 * s['f1_macro']:5.1f} ± {100 * s['f1_macro_sd']:4.1f}  "
                             f"output for {100 * s['coverage']:5.1f} % of the pixels"
                             + (f" (accuracy there {100 * s['accuracy_where_given']:.1f})" if s['coverage'] < 1 else ""))
        w = r["water"]
        lines.append(f"  water ({w['class']}): NDWI > 0 F1 {100 * w['ndwi_f1']:.1f}, fine map F1 {100 * w['fine_f1']:.1f}")
        lines.append("  fit seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in r["fit_seconds"].items()
                                                   if isinstance(v, float)))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
