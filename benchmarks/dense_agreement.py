"""Dense vs sliding-window agreement on the real scenes, split by the reference's top-two margin
and by distance from the scene edge (where a disagreement comes from).

- spain: the bundled Sen1Floods11 scene, S2 + S1 (resources/sample/spain);
- usa: the Sentinel-2 L1C JPEG 2000 bands of ../shared/data/s2-l1c-usa (optical only, 10/20/60 m
  bands stacked through a VRT), when that folder is there.

    python benchmarks/dense_agreement.py [--model resources/models/mosaic-small-ben19] [--stride 16]
                                         [--scenes spain usa] [--context 64 80 128]
                                         [--block 256]
"""
import argparse
import glob
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import rasterio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from core.engine import SceneRequest, run_scene  # noqa: E402
from core.engine.align import build_band_vrt  # noqa: E402


def scene_inputs(name: str, tmp: str) -> dict | None:
    if name == "spain":
        d = ROOT / "resources" / "sample" / "spain"
        return dict(optical=str(d / "Spain_7370579_S2Hand.tif"), sar=str(d / "Spain_7370579_S1Hand.tif"),
                    optical_bands=["S2-13"])
    bands = sorted(glob.glob(str(ROOT.parent / "shared" / "data" / "s2-l1c-usa" / "s2_B*.jp2")))
    if not bands:
        print("usa: ../shared/data/s2-l1c-usa not found, skipped")
        return None
    vrt = build_band_vrt(bands, os.path.join(tmp, "usa.vrt"))  # file order: B01..B12, then B8A
    order = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "-", "B11", "B12", "B8A"]
    return dict(optical=vrt, optical_bands=order)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(ROOT / "resources" / "models" / "mosaic-small-ben19"))
    p.add_argument("--stride", type=int, default=16)
    p.add_argument("--scenes", nargs="+", default=["spain", "usa"], choices=["spain", "usa"])
    p.add_argument("--block", type=int, default=2048, help="dense block size in px (small: many block seams)")
    p.add_argument("--context", nargs="+", type=int, default=[None],
                   help="dense mode's context around each block in px (default: the engine's); several to compare")
    args = p.parse_args()
    tmp = tempfile.mkdtemp()
    for name in args.scenes:
        inputs = scene_inputs(name, tmp)
        if inputs is None:
            continue
        out = os.path.join(tmp, f"{name}-sliding.tif")
        run_scene(SceneRequest(model=args.model, outputs={"probabilities": out}, probability_dtype="float32",
                               mode="sliding", stride=args.stride, batch_size=64, **inputs))
        with rasterio.open(out) as s:
            b = s.read()
        for context in args.context:
            out = os.path.join(tmp, f"{name}-dense-{context}.tif")
            run_scene(SceneRequest(model=args.model, outputs={"probabilities": out}, probability_dtype="float32",
                                   mode="dense", stride=args.stride, halo=context, block_size=args.block, **inputs))
            with rasterio.open(out) as s:
                a = s.read()
            ok = np.isfinite(a).all(0) & np.isfinite(b).all(0)
            agree = a.argmax(0)[ok] == b.argmax(0)[ok]
            diff = np.abs(a - b)[:, ok]
            print(f"{name}, stride {args.stride} px, dense context {context or 'default'} px: {ok.sum()} cells, "
                  f"dominant class agrees on {100 * agree.mean():.1f} %, "
                  f"mean |p_dense - p_sliding| {diff.mean():.4f}, max {diff.max():.3f}")
        srt = np.sort(b[:, ok], axis=0)
        margin = srt[-1] - srt[-2]
        for t in (0.02, 0.05, 0.1):
            m = margin > t
            print(f"  where the reference's top-two margin > {t}: {100 * m.mean():.0f} % of cells, agree {100 * agree[m].mean():.1f} %")
        H, W = ok.shape
        rr, cc = np.nonzero(ok)
        edge = np.minimum.reduce([rr, cc, H - 1 - rr, W - 1 - cc])
        for e in (0, 2, 4):
            m = edge > e
            print(f"  more than {e} cells from the scene edge: {100 * m.mean():.0f} % of cells, agree {100 * agree[m].mean():.1f} %")


if __name__ == "__main__":
    main()
