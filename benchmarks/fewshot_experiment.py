"""Few-shot quality experiment: a simulated analyst labels k patches per class.

On a reBEN-layout folder (default ../shared/data/bigearthnet-dev), the support patches
(the analyst's "polygons") are drawn from the train + validation splits, k per class
(k = 1, 5, 10; several seeds), and every model is evaluated on the test split, which
neither the bundled model nor any support set has seen. Compared:

- base:    the bundled model unchanged;
- bce:     its head fine-tuned with BCE only on the same support set (encoders frozen);
- mosaic:  ``core.fewshot.finetune`` with the MoSAiC objective (intra + inter + supcon + BCE),
           the rest of the pool used as unlabelled windows for the contrastive terms.

Caveat printed with the results: the bundled model was trained on the train split of the
same 69-patch sample, so support patches from it are not new to the encoders.

    .venv/bin/python benchmarks/fewshot_experiment.py --out docs/fewshot
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.data.reben import ReBenPatches  # noqa: E402
from core.eval.metrics import multilabel_metrics  # noqa: E402
from core.eval.predict import predict  # noqa: E402
from core.fewshot.finetune import FinetuneConfig, finetune  # noqa: E402
from core.fewshot.samples import SampleSet  # noqa: E402
from core.io.model_file import load_model  # noqa: E402


def arrays(ds: ReBenPatches, idx) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    s2 = np.stack([ds.images(i)[0].numpy() for i in idx])
    s1 = np.stack([ds.images(i)[1].numpy() for i in idx])
    return s2, s1, ds.labels[list(idx)].numpy().astype(np.float32)


def support(labels: np.ndarray, k: int, seed: int) -> tuple[list[int], int]:
    """k patches per class (fewer where the pool has fewer), union over classes; and the
    number of classes that actually have k patches in the pool."""
    rng = np.random.default_rng(seed)
    chosen: set[int] = set()
    full = 0
    for c in range(labels.shape[1]):
        pos = np.flatnonzero(labels[:, c] > 0)
        full += len(pos) >= k
        have = [i for i in pos if i in chosen]
        rest = [i for i in rng.permutation(pos) if i not in chosen]
        chosen.update(rest[: max(0, k - len(have))])
    return sorted(chosen), full


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "bigearthnet-dev"))
    ap.add_argument("--model", default=str(ROOT / "resources" / "models" / "mosaic-small-ben19"))
    ap.add_argument("--ks", default="1,5,10")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--parts", default="head")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "docs" / "fewshot"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pool = ReBenPatches(args.data, ("train", "validation"))
    test = ReBenPatches(args.data, ("test",))
    classes = pool.classes
    p2, p1, py = arrays(pool, range(len(pool)))
    t2, t1, ty = arrays(test, range(len(test)))
    test_set = SampleSet(t2, t1, ty, np.arange(len(ty)), classes, [(0, 0)] * len(ty))
    base, _ = load_model(args.model)
    from core.fewshot.samples import ArrayPatches

    base_probs = predict(base, ArrayPatches(t2, t1, ty, classes), batch_size=32)["probs"]
    base_m = multilabel_metrics(ty, base_probs, classes)
    print(f"pool {len(pool)} patches (train+validation), test {len(test)} patches, "
          f"{base_m['n_classes_defined']} classes with a test positive")
    print(f"base: AP macro {100 * base_m['ap_macro']:.1f}  micro {100 * base_m['ap_micro']:.1f}")
    rows = []
    for k in [int(x) for x in args.ks.split(",")]:
        for seed in [int(x) for x in args.seeds.split(",")]:
            idx, full = support(py, k, seed)
            rest = [i for i in range(len(py)) if i not in set(idx)]
            sup = SampleSet(p2[idx], p1[idx], py[idx], np.arange(len(idx)), classes, [(0, 0)] * len(idx))
            for method in ("bce", "mosaic"):
                t0 = time.perf_counter()
                cfg = FinetuneConfig(epochs=args.epochs, train_parts=args.parts, seed=seed, device="cpu",
                                     threads=args.threads, val_share=0.0,
                                     weights={"intra": 0, "inter": 0, "supcon": 0} if method == "bce" else {},
                                     augment=method == "mosaic")
                unl = {"s2": p2[rest], "s1": p1[rest]} if method == "mosaic" and rest else None
                res = finetune(args.model, sup, test_set, unl, cfg)
                m = res.validation
                rows.append({"k": k, "seed": seed, "method": method, "support": len(idx), "classes_with_k": full,
                             "unlabelled": len(rest) if unl else 0, "ap_macro": m["ap_macro"],
                             "ap_micro": m["ap_micro"], "seconds": round(time.perf_counter() - t0, 1)})
                print(f"k={k} seed={seed} {method:6s} support {len(idx):2d} ({full:2d} classes with k) "
                      f"AP macro {100 * m['ap_macro']:.1f} micro {100 * m['ap_micro']:.1f} "
                      f"[{rows[-1]['seconds']} s]", flush=True)
    summary = {"base": {"ap_macro": base_m["ap_macro"], "ap_micro": base_m["ap_micro"]}, "runs": rows,
               "pool": len(pool), "test": len(test), "epochs": args.epochs, "parts": args.parts,
               "command": " ".join(sys.argv)}
    agg = {}
    for r in rows:
        agg.setdefault((r["k"], r["method"]), []).append(r)
    summary["aggregate"] = [
        {"k": k, "method": mth, "n_seeds": len(v), "classes_with_k": v[0]["classes_with_k"],
         "support_mean": float(np.mean([r["support"] for r in v])),
         "ap_macro_mean": float(np.mean([r["ap_macro"] for r in v])), "ap_macro_std": float(np.std([r["ap_macro"] for r in v])),
         "ap_micro_mean": float(np.mean([r["ap_micro"] for r in v])), "ap_micro_std": float(np.std([r["ap_micro"] for r in v]))}
        for (k, mth), v in sorted(agg.items())]
    (out / "fewshot_results.json").write_text(json.dumps(summary, indent=2))
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), dpi=100)
    axes = fig.subplots(1, 2)
    ks = sorted({r["k"] for r in rows})
    for ax, key, title in ((axes[0], "ap_macro", "AP macro"), (axes[1], "ap_micro", "AP micro")):
        ax.axhline(100 * base_m[key], color="grey", ls="--", label="bundled model (unchanged)")
        for mth, color in (("bce", "tab:orange"), ("mosaic", "tab:blue")):
            a = [x for x in summary["aggregate"] if x["method"] == mth]
            ax.errorbar([x["k"] for x in a], [100 * x[f"{key}_mean"] for x in a],
                        yerr=[100 * x[f"{key}_std"] for x in a], marker="o", capsize=4, color=color,
                        label="head, BCE only" if mth == "bce" else "MoSAiC fine-tune")
        ax.set_xticks(ks)
        ax.set_xlabel("k labelled patches per class")
        ax.set_ylabel(f"{title} on {len(test)} test patches (%)")
        ax.set_title(title)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "fewshot_ap.png")
    print("\nk  method  AP macro (mean ± sd)  AP micro (mean ± sd)  classes with k patches  support")
    for x in summary["aggregate"]:
        print(f"{x['k']:2d} {x['method']:6s}  {100 * x['ap_macro_mean']:.1f} ± {100 * x['ap_macro_std']:.1f}"
              f"            {100 * x['ap_micro_mean']:.1f} ± {100 * x['ap_micro_std']:.1f}"
              f"            {x['classes_with_k']:2d}/19               {x['support_mean']:.1f}")
    print(f"written: {out / 'fewshot_results.json'}, {out / 'fewshot_ap.png'}")


if __name__ == "__main__":
    main()
