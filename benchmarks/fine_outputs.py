"""Fine outputs' cost (not a test): prints, in one run on this machine, the time and peak RSS of

- today's dense classify (window probabilities + dominant class),
- fine outputs alone (fine classes, probabilities, uncertainty: the pixel head on the 20 m stage),
- both in one run (window outputs and fine outputs from the same encoder pass),

on a 4096 x 4096 synthetic S2 + S1 scene (speed does not depend on content), with a model that
has a pixel head (made here from the bundled model with a random pixel head of the shipped
architecture). Each run is a subprocess; the runs alternate over ``--rounds`` rounds and the
best of each is kept (the machine is shared: a slow repeat is someone else's load).

Run from the repository root:  PYTHONPATH=. .venv/bin/python benchmarks/fine_outputs.py [--size 4096]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
BASE = str(ROOT / "resources" / "models" / "mosaic-small-ben19")

KINDS = {
    "window (today)": ("probabilities", "dominant"),
    "fine only": ("fine_classes", "fine_probabilities", "fine_uncertainty"),
    "window + fine": ("probabilities", "dominant", "fine_classes", "fine_probabilities", "fine_uncertainty"),
}


def model_with_pixel_head(out: Path) -> str:
    """The bundled model plus a pixel head (random weights: speed does not depend on them) over
    5 classes, S2 + S1, the shipped head's size and stages."""
    import torch

    from core.fewshot.finetune import FinetuneConfig
    from core.io.model_file import load_model, save_model

    model, card = load_model(BASE)
    cfg = FinetuneConfig()
    classes = tuple(f"class {i}" for i in range(5))
    head = model.make_pixel_head(classes, ("s2", "s1"), cfg.pixel_hidden, cfg.pixel_levels)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in head.parameters():
            p.normal_(0, 0.1)
    model.attach_pixel_head(head, classes, ("s2", "s1"), cfg.pixel_hidden, cfg.pixel_levels)
    card["pixel_classes"] = [{"name": c, "color": "#808080"} for c in classes]
    save_model(model, out / "with-pixel-head", card)
    return str(out / "with-pixel-head")


def one_run(model: str, s2: str, s1: str, kinds: list[str], out: str) -> None:
    """In a subprocess: one classify; prints JSON {seconds, rss_mb}."""
    from core.engine import SceneRequest, run_scene

    t = time.perf_counter()
    run_scene(SceneRequest(model=model, optical=s2, sar=s1, mode="dense",
                           outputs={k: f"{out}/{k}.tif" for k in kinds}))
    print(json.dumps({"seconds": time.perf_counter() - t,
                      "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    from scene_benchmark import write_scene

    with tempfile.TemporaryDirectory(prefix="mosaic-fine-bench-") as d:
        tmp = Path(d)
        s2, s1 = write_scene(tmp, a.size)
        model = model_with_pixel_head(tmp)
        best: dict[str, dict] = {}
        for r in range(a.rounds):
            for name, kinds in KINDS.items():
                out = tmp / "out"
                out.mkdir(exist_ok=True)
                code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); sys.path.insert(0, {str(ROOT / 'benchmarks')!r});"
                        f"from fine_outputs import one_run; one_run({model!r}, {s2!r}, {s1!r}, {list(kinds)!r}, {str(out)!r})")
                res = json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                                                text=True).stdout.strip().splitlines()[-1])
                print(f"round {r + 1}: {name:15s} {res['seconds']:6.1f} s  peak RSS {res['rss_mb']:6.0f} MB", flush=True)
                b = best.setdefault(name, {"seconds": float("inf"), "rss_mb": 0.0})
                b["seconds"] = min(b["seconds"], res["seconds"])
                b["rss_mb"] = max(b["rss_mb"], res["rss_mb"])
        ref = best["window (today)"]["seconds"]
        print(f"\n{a.size}^2 S2 + S1, dense, best of {a.rounds} rounds:")
        for name, b in best.items():
            print(f"  {name:15s} {b['seconds']:6.1f} s  {b['seconds'] / ref:4.2f}x today's classify  "
                  f"peak RSS {b['rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
