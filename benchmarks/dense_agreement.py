"""Dense vs sliding-window agreement on the real Spain scene, split by the reference's top-two margin
and by distance from the scene edge (where a disagreement comes from).

    python benchmarks/dense_agreement.py [--model resources/models/mosaic-small-ben19] [--stride 16]
"""
import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import rasterio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from core.engine import SceneRequest, run_scene  # noqa: E402

p = argparse.ArgumentParser(description=__doc__)
p.add_argument("--model", default="resources/models/mosaic-small-ben19")
p.add_argument("--stride", type=int, default=16)
args = p.parse_args()
d = tempfile.mkdtemp()
P = {}
for mode in ("dense", "sliding"):
    out = os.path.join(d, f"{mode}.tif")
    run_scene(SceneRequest(model=args.model, optical="resources/sample/spain/Spain_7370579_S2Hand.tif",
        sar="resources/sample/spain/Spain_7370579_S1Hand.tif", optical_bands=["S2-13"], outputs={"probabilities": out},
        probability_dtype="float32", mode=mode, stride=args.stride))
    with rasterio.open(out) as s: P[mode] = s.read()
a, b = P["dense"], P["sliding"]
ok = np.isfinite(a).all(0) & np.isfinite(b).all(0)
da, db = a.argmax(0)[ok], b.argmax(0)[ok]
srt = np.sort(b[:, ok], axis=0); margin = srt[-1] - srt[-2]
agree = da == db
print("cells", ok.sum(), "agree", agree.mean(), "mean|d|", np.abs(a-b)[:, ok].mean())
for t in (0.02, 0.05, 0.1):
    m = margin > t
    print(f"margin>{t}: share {m.mean():.2f} agree {agree[m].mean():.3f}")
# edge distance
H, W = ok.shape
rr, cc = np.nonzero(ok)
edge = np.minimum.reduce([rr, cc, H-1-rr, W-1-cc])
for e in (0, 2, 4):
    m = edge > e
    print(f"edge>{e}: share {m.mean():.2f} agree {agree[m].mean():.3f}")
