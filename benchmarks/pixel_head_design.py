"""How the pixel head was chosen (not a test): the same head on different hypercolumns, trained with
and without context mixing, on the real Spain and Germany polygons, in one run.

Feature sets (per modality, bands always included): the bands alone; + the 20 m stage (layer1);
+ the 20 and 40 m stages; + all four stages (20/40/80/160 m). Protocols as in fewshot_maps.py:
5-fold over polygons (3 seeds) and 2 polygons per class (10 repeats) tested on all others; per-pixel
accuracy and macro F1 of the held-out polygons. Writes docs/fewshot/pixel_head_design.json.

Run from the repository root:  PYTHONPATH=. .venv/bin/python benchmarks/pixel_head_design.py
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from fewshot_maps import SCENES, Scene, few_polygons, kfold, summarise  # noqa: E402

from core.fewshot.pixel_training import PixelHeadConfig, fit_pixel_head, predict_pixels  # noqa: E402
from core.fewshot.pixels import extract_pixels  # noqa: E402

VARIANTS = {  # name -> (stages kept besides the bands, context mixing)
    "bands": (0, 0.0),
    "bands + 20 m": (1, 0.0),
    "bands + 20 m, context mixing (shipped)": (1, 1.0),
    "bands + 20/40 m, context mixing": (2, 1.0),
    "bands + 20/40/80/160 m": (4, 0.0),
    "bands + 20/40/80/160 m, context mixing": (4, 1.0),
}


def variant(levels: int, mix: float):
    def fit_predict(sc, train, test, seed):
        dims = {m: sc.dims4[m][: 1 + levels] for m in sc.mods}
        cut = {m: sum(dims[m]) for m in sc.mods}

        def keep(ps):
            q = ps.subset(np.arange(len(ps)))
            q.feats = {m: f[:, : cut[m]] for m, f in ps.feats.items()}
            return q
        head = fit_pixel_head(keep(train), dims, sc.strides4[:levels], PixelHeadConfig(seed=seed, context_mix=mix))
        return predict_pixels(head, keep(test))
    return fit_predict


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "docs" / "fewshot" / "pixel_head_design.json"))
    a = ap.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as d:
        for name in SCENES:
            sc = Scene(name, Path(d))
            try:  # hypercolumns with every stage, cut per variant
                sc.pixels = extract_pixels(sc.polygons, sc.crs, sc.readers, sc.model, sc.classes, 4, seed=0)
                sc.dims4 = sc.model.pixel_level_dims(sc.mods, 4)
                sc.strides4 = sc.model.encoders[sc.mods[0]].level_strides
                methods = {k: variant(*v) for k, v in VARIANTS.items()}
                results[name] = {"kfold": {k: summarise(v) for k, v in kfold(sc, methods, (0, 1, 2)).items()},
                                 "two_polygons_per_class": {k: summarise(v)
                                                            for k, v in few_polygons(sc, methods).items()}}
            finally:
                sc.close()
            for proto, rows in results[name].items():
                print(f"{name} {proto}")
                for k, s in rows.items():
                    print(f"  {k:42s} accuracy {100 * s['accuracy']:5.1f} ± {100 * s['accuracy_sd']:4.1f}  "
                          f"macro F1 {100 * s['f1_macro']:5.1f} ± {100 * s['f1_macro_sd']:4.1f}", flush=True)
    Path(a.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
