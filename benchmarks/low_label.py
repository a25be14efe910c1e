"""The low-label experiment: every method with the same code, data and training budget.

Rows: class prior; random forest on per-band patch statistics; supervised only (BCE);
SimCLR (intra-modal only) + linear probe; CLIP (inter-modal only) + linear probe; MoSAiC
(all terms); and the bundled model's two-stage recipe (``--methods mosaic-2stage``: a
self-supervised stage 1 on every real unlabelled scene, ``core/train/recipe.py``, once per
seed, then MoSAiC from its encoders) with its ablations (stage 1 + BCE only, or MoSAiC without
one term, or with the self-supervised terms down-weighted to 0.1). Inputs S2, S1 and S1+S2 where the method applies; label fractions of the
training split; several seeds. Training uses the training split only (labelled share +
the rest unlabelled) plus, optionally, unlabelled windows of a real S1+S2 scene; scores
come from the validation and test splits only.

    python benchmarks/low_label.py --out docs/results --device cuda --jobs 8
    python benchmarks/low_label.py --quick          # a minutes-long smoke run on CPU
    python benchmarks/low_label.py --methods mosaic-2stage 2stage-bce --inputs s1+s2 \
        --resume docs/results/raw.jsonl --no-baselines --jobs 2 --threads 1 --epochs 100

Writes OUT/raw.jsonl (one line per run and split), OUT/summary.json, OUT/table.md and
the plots OUT/ap_vs_fraction.png, OUT/embeddings_2d.png.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SPLITS = ("validation", "test")
MODS = {"s2": ("s2",), "s1": ("s1",), "s1+s2": ("s2", "s1")}
# method -> (row name, objective, loss-weight overrides, starts from the two-stage recipe's stage 1)
METHODS = {
    "supervised": ("supervised (BCE)", "supervised", {}, False),
    "mosaic": ("MoSAiC", "mosaic", {}, False),
    "simclr": ("SimCLR + probe", "simclr", {}, False),
    "clip": ("CLIP + probe", "clip", {}, False),
    "mosaic-2stage": ("MoSAiC two-stage", "mosaic", {}, True),
    "2stage-bce": ("stage 1 + BCE only", "supervised", {}, True),
    "2stage-no-supcon": ("two-stage, no SupCon", "mosaic", {"supcon": 0.0}, True),
    "2stage-no-intra": ("two-stage, no intra-modal", "mosaic", {"intra": 0.0}, True),
    "2stage-no-inter": ("two-stage, no inter-modal", "mosaic", {"inter": 0.0}, True),
    "2stage-ssl-0.1": ("two-stage, self-supervised terms x0.1", "mosaic", {"intra": 0.1, "inter": 0.1}, True),
}
PROBED = ("simclr", "clip")
SPAIN = Path(__file__).resolve().parents[1] / "resources" / "sample" / "spain"


def _spain_paths(root: Path) -> tuple[str, str] | None:
    s2, s1 = root / "Spain_7370579_S2Hand.tif", root / "Spain_7370579_S1Hand.tif"
    return (str(s2), str(s1)) if s2.is_file() and s1.is_file() else None


def _scores(labels, probs, emb, classes, seed) -> dict:
    from core.eval.metrics import cluster_coherence, multilabel_metrics

    m = multilabel_metrics(labels, probs, classes)
    out = {k: m[k] for k in ("ap_macro", "ap_micro", "f1_micro", "f1_macro")}
    if emb is not None:
        out.update(cluster_coherence(emb, labels, seed=seed))
    return out


def run_job(job: dict) -> list[dict]:
    """Train one model (supervised/mosaic: per fraction; simclr/clip: once, probed per fraction)."""
    import torch

    from core.data.reben import ReBenPatches
    from core.data.scene_windows import PooledPatches, SceneWindows
    from core.eval.predict import predict
    from core.eval.probe import linear_probe
    from core.train.config import TrainConfig
    from core.device import resolve_device
    from core.train.loop import train

    torch.set_num_threads(job["threads"])
    job = {**job, "device": str(resolve_device(job["device"]))}
    t0 = time.perf_counter()
    mods = MODS[job["mods"]]
    fraction = job.get("fraction", 1.0)
    base = ReBenPatches(job["data"], ("train",), fraction, job["seed"])
    parts = [base]
    if job.get("scene"):
        parts.append(SceneWindows(*job["scene"]))
    pool = PooledPatches(parts) if len(parts) > 1 else base
    _, objective, weights, two_stage = METHODS[job["method"]]
    stage1 = str(Path(job["stage1"]) / "model.safetensors") if two_stage else None
    cfg = TrainConfig(data=job["data"], out=job["run_dir"], objective=objective, weights=weights,
                      label_fraction=fraction, modalities=mods, epochs=job["epochs"], batch_size=job["batch"],
                      seed=job["seed"], device=job["device"], progress=False, lr=job["lr"],
                      pretrained_s2=stage1 if "s2" in mods else None, pretrained_s1=stage1 if "s1" in mods else None)
    res = train(cfg, pool)
    seconds = time.perf_counter() - t0
    model = res.model
    rows = []
    evals = {s: ReBenPatches(job["data"], (s,)) for s in SPLITS}
    preds = {s: predict(model, d, mods, device=job["device"]) for s, d in evals.items()}
    classes = base.classes
    if job["method"] not in PROBED:
        for s in SPLITS:
            p = preds[s]
            rows.append({**_meta(job, fraction, seconds), "split": s,
                         **_scores(p["labels"], p["probs"], p["embeddings"], classes, job["seed"])})
    else:
        tr = predict(model, ReBenPatches(job["data"], ("train",)), mods, device=job["device"])
        for f in job["fractions"]:
            keep = ReBenPatches(job["data"], ("train",), f, job["seed"]).labelled
            for s in SPLITS:
                p = preds[s]
                probs = linear_probe(tr["embeddings"][keep], tr["labels"][keep], p["embeddings"], seed=job["seed"])
                rows.append({**_meta(job, f, seconds), "split": s,
                             **_scores(p["labels"], probs, p["embeddings"], classes, job["seed"])})
    if job.get("keep_embeddings"):
        np.savez(Path(job["run_dir"]) / "embeddings.npz", emb=preds["test"]["embeddings"],
                 labels=preds["test"]["labels"])
    return rows


def run_stage1(job: dict) -> str:
    """The recipe's stage 1 for one seed, once: every later job of that seed starts from it."""
    import subprocess

    from core.train.recipe import resume_args, stage1_args, stage_finished

    out = Path(job["dir"])
    if stage_finished(out):
        return f"stage 1 seed {job['seed']}: done before"
    t0 = time.perf_counter()
    args = stage1_args(job["data"], job["seed"], out, job["epochs"])
    args += ["--device", job["device"], "--threads", str(job["threads"])]
    args += resume_args(out)
    # its own process: the CLI's signal handlers stay out of the pool's workers
    if subprocess.run([sys.executable, "-m", "core", *args], cwd=Path(__file__).resolve().parents[1]).returncode:
        raise RuntimeError(f"stage 1 of seed {job['seed']} failed; rerun with --resume to continue it")
    return f"stage 1 seed {job['seed']}: {time.perf_counter() - t0:.0f} s"


def _meta(job: dict, fraction: float, seconds: float) -> dict:
    name = METHODS[job["method"]][0]
    return {"method": name, "inputs": job["mods"], "fraction": fraction, "seed": job["seed"],
            "train_seconds": round(seconds, 1), "epochs": job["epochs"]}


def simple_baselines(data: str, fractions, seeds) -> list[dict]:
    """Class prior and a random forest on per-band statistics (mean, std, 10/50/90th percentiles)."""
    from sklearn.ensemble import RandomForestClassifier

    from core.data.reben import ReBenPatches
    from core.eval.metrics import class_prior_scores

    def feats(ds, mods):
        out = []
        for i in range(len(ds)):
            s2, s1 = ds.images(i)
            x = np.concatenate([t.numpy() for t, m in ((s2, "s2"), (s1, "s1")) if m in mods])
            flat = x.reshape(x.shape[0], -1)
            out.append(np.concatenate([flat.mean(1), flat.std(1), *np.percentile(flat, [10, 50, 90], axis=1)]))
        return np.stack(out)

    rows = []
    train_all = ReBenPatches(data, ("train",))
    evals = {s: ReBenPatches(data, (s,)) for s in SPLITS}
    for mods_name, mods in MODS.items():
        ftr = feats(train_all, mods)
        fev = {s: feats(d, mods) for s, d in evals.items()}
        for f in fractions:
            for seed in seeds:
                keep = ReBenPatches(data, ("train",), f, seed).labelled
                y = train_all.labels.numpy()[keep]
                t0 = time.perf_counter()
                rf = RandomForestClassifier(n_estimators=300, random_state=seed, n_jobs=-1).fit(ftr[keep], y)
                secs = time.perf_counter() - t0
                for s, d in evals.items():
                    labels = d.labels.numpy()
                    probs = np.zeros_like(labels, dtype=float)
                    pr = rf.predict_proba(fev[s])
                    for k, p in enumerate(pr if isinstance(pr, list) else [pr]):
                        cls = list(rf.classes_[k]) if isinstance(rf.classes_, list) else list(rf.classes_)
                        probs[:, k] = p[:, cls.index(1)] if 1 in cls else 0.0
                    rows.append({"method": "random forest", "inputs": mods_name, "fraction": f, "seed": seed,
                                 "split": s, "train_seconds": round(secs, 1), "epochs": None,
                                 **_scores(labels, probs, fev[s], d.classes, seed)})
                    if mods_name == "s1+s2":
                        prior = class_prior_scores(y, len(d))
                        rows.append({"method": "class prior", "inputs": "-", "fraction": f, "seed": seed,
                                     "split": s, "train_seconds": 0.0, "epochs": None,
                                     **_scores(labels, prior, None, d.classes, seed)})
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    keys = ("ap_macro", "ap_micro", "f1_micro", "nmi", "ari", "silhouette", "train_seconds")
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["method"], r["inputs"], r["fraction"], r["split"]), []).append(r)
    out = []
    for (m, i, f, s), rs in sorted(groups.items(), key=lambda kv: (kv[0][3], kv[0][2], kv[0][0], kv[0][1])):
        row = {"method": m, "inputs": i, "fraction": f, "split": s, "n_seeds": len(rs)}
        for k in keys:
            vals = [r[k] for r in rs if r.get(k) is not None]
            row[k] = (float(np.mean(vals)), float(np.std(vals))) if vals else None
        out.append(row)
    return out


def table_md(summary: list[dict]) -> str:
    def fmt(v, pct=True):
        if v is None:
            return "-"
        m, s = v
        return f"{100 * m:.1f} ± {100 * s:.1f}" if pct else f"{m:.2f} ± {s:.2f}"

    lines = []
    for split in SPLITS:
        lines += [f"\n### {split} split\n",
                  "| fraction | method | inputs | AP macro | AP micro | F1 micro | NMI | ARI | silhouette | train s |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in summary:
            if r["split"] != split:
                continue
            t = "-" if r["train_seconds"] is None else f"{r['train_seconds'][0]:.0f}"
            lines.append(f"| {int(100 * r['fraction'])} % | {r['method']} | {r['inputs']} | {fmt(r['ap_macro'])} | "
                         f"{fmt(r['ap_micro'])} | {fmt(r['f1_micro'])} | {fmt(r['nmi'], False)} | {fmt(r['ari'], False)} | "
                         f"{fmt(r['silhouette'], False)} | {t} |")
    return "\n".join(lines) + "\n"


def plots(summary: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for ax, split in zip(axes, SPLITS):
        series: dict[str, list] = {}
        for r in summary:
            if r["split"] == split and r["inputs"] in ("s1+s2", "-"):
                series.setdefault(r["method"], []).append((r["fraction"], *r["ap_macro"]))
        for name, pts in sorted(series.items()):
            pts.sort()
            f, m, s = map(np.array, zip(*pts))
            ax.errorbar(100 * f, 100 * m, yerr=100 * s, marker="o", capsize=3, label=name)
        ax.set_xscale("log")
        ax.set_xlabel("labelled share of the training split (%)")
        ax.set_title(f"{split}: AP macro, S1+S2 inputs (mean ± std over seeds)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("AP macro (%)")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "ap_vs_fraction.png", dpi=120)
    plt.close(fig)


def embedding_plot(runs: dict[str, Path], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA

    from core.data.bands import BEN19_CLASSES, BEN19_COLORS
    from core.eval.metrics import dominant_label

    fig, axes = plt.subplots(1, len(runs), figsize=(6 * len(runs), 5))
    for ax, (name, path) in zip(np.atleast_1d(axes), runs.items()):
        d = np.load(path)
        xy = PCA(2, random_state=0).fit_transform(d["emb"])
        dom = dominant_label(d["labels"])
        for k in np.unique(dom):
            sel = dom == k
            label = BEN19_CLASSES[k] if k >= 0 else "none"
            ax.scatter(xy[sel, 0], xy[sel, 1], s=40, c=BEN19_COLORS[k] if k >= 0 else "#000",
                       edgecolors="k", linewidths=0.5, label=label[:32])
        ax.set_title(f"{name}: test-split embeddings (PCA), by dominant label")
    np.atleast_1d(axes)[-1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(out / "embeddings_2d.png", dpi=120)
    plt.close(fig)


def main() -> None:
    from core.paths import SAMPLE_REBEN
    from core.train.recipe import STAGE1_EPOCHS

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(SAMPLE_REBEN), help="reBEN folder (default: bundled sample)")
    p.add_argument("--out", default="docs/results", help="where the results go")
    p.add_argument("--fractions", type=float, nargs="+", default=[0.1, 0.3, 1.0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=60, help="training epochs, the same for every method")
    p.add_argument("--stage1-epochs", type=int, help="epochs of the two-stage recipe's stage 1 (default: the recipe's)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--device", default="auto")
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel (processes)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads per run")
    p.add_argument("--no-scene", action="store_true", help="no unlabelled scene windows in the training pool")
    p.add_argument("--inputs", nargs="+", default=list(MODS), choices=list(MODS), help="input sets to run")
    p.add_argument("--methods", nargs="+", default=["supervised", "mosaic", "simclr", "clip"], choices=list(METHODS),
                   help="methods to train (in this order of priority; CLIP only with S1+S2)")
    p.add_argument("--resume", help="raw.jsonl of an interrupted run: skip the runs it holds, keep its rows")
    p.add_argument("--no-baselines", action="store_true", help="skip the class prior and the random forest")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 seed, fraction 1.0, 2 epochs")
    p.add_argument("--list", action="store_true", help="print the runs that would train, and stop")
    a = p.parse_args()
    if a.quick:
        a.seeds, a.fractions, a.epochs, a.stage1_epochs = [0], [1.0], 2, 1
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    scene = None if a.no_scene else _spain_paths(SPAIN) or _spain_paths(Path(__file__).resolve().parents[2] / "shared/data/sen1floods11-spain")
    common = dict(data=a.data, epochs=a.epochs, batch=a.batch, lr=a.lr, device=a.device, threads=a.threads, scene=scene)
    jobs = []
    old = [json.loads(line) for line in open(a.resume)] if a.resume else []
    held = {(r["method"], r["inputs"], r["fraction"], r["seed"]) for r in old}
    for method in a.methods:  # in the order asked: what matters most finishes first
        for f in sorted(a.fractions, reverse=True):
            for mods in a.inputs:
                for seed in a.seeds:
                    if method in PROBED:
                        if f == max(a.fractions) and (method == "simclr" or mods == "s1+s2"):
                            jobs.append({**common, "method": method, "mods": mods, "seed": seed,
                                         "fractions": a.fractions})
                        continue
                    keep = (method in ("supervised", "mosaic") and seed == a.seeds[-1] and mods == "s1+s2"
                            and f == max(a.fractions))
                    jobs.append({**common, "method": method, "mods": mods, "fraction": f, "seed": seed,
                                 "keep_embeddings": keep, "stage1": str(out / "runs" / f"stage1-s{seed}")})
    jobs = [j for j in jobs if (METHODS[j["method"]][0], j["mods"], j.get("fraction", max(a.fractions)), j["seed"])
            not in held]
    for j in jobs:
        j["run_dir"] = str(out / "runs" / f"{j['method']}-{j['mods']}-{j.get('fraction', 'all')}-s{j['seed']}")
    stage1 = sorted({(j["seed"], j["stage1"]) for j in jobs if METHODS[j["method"]][3]})
    if a.list:
        print("\n".join([Path(d).name for _, d in stage1] + [Path(j["run_dir"]).name for j in jobs]))
        return
    t0 = time.perf_counter()
    print(f"{len(jobs)} training runs, {a.epochs} epochs each, {a.jobs} in parallel on {a.device}; "
          f"unlabelled scene windows: {'yes' if scene else 'no'}", flush=True)
    rows = old + ([] if a.no_baselines or old else simple_baselines(a.data, a.fractions, a.seeds))
    ctx = mp.get_context("spawn")
    with ctx.Pool(a.jobs) as pool, open(out / "raw.jsonl", "w") as raw:
        for r in rows:
            raw.write(json.dumps(r) + "\n")
        raw.flush()
        s1_jobs = [{"seed": s, "dir": d, "data": a.data, "device": a.device, "threads": a.threads,
                    "epochs": a.stage1_epochs or STAGE1_EPOCHS} for s, d in stage1]
        for msg in pool.imap_unordered(run_stage1, s1_jobs):
            print(msg, flush=True)
        for k, res in enumerate(pool.imap_unordered(run_job, jobs)):
            rows += res
            for r in res:
                raw.write(json.dumps(r) + "\n")
            raw.flush()
            print(f"[{k + 1}/{len(jobs)}] {res[0]['method']} {res[0]['inputs']} seed {res[0]['seed']}: "
                  f"{res[0]['train_seconds']} s, val AP macro {100 * res[0]['ap_macro']:.1f}", flush=True)
    summary = summarise(rows)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    (out / "table.md").write_text(table_md(summary))
    plots(summary, out)
    emb = {("MoSAiC" if j["method"] == "mosaic" else "supervised only"): Path(j["run_dir"]) / "embeddings.npz"
           for j in jobs if j.get("keep_embeddings")}
    if len(emb) == 2:
        embedding_plot(emb, out)
    print(f"done in {time.perf_counter() - t0:.0f} s; table: {out / 'table.md'}")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    main()
