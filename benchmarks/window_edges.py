"""Window outputs at the scene's edge (not a test): does a cell near the edge say what the model says
with real data all round?

A model fine-tuned from polygons that include some at the scene's edge (the 'quick' polygons of the
Spain scene plus four at its western edge, orchards as a new class 'Orchards') classifies the whole
scene and a crop of it (inset 96 px on every side). A crop cell near the crop's edge sees padding
where the whole-scene cell sees real pixels: the share of crop cells whose dominant class equals the
whole scene's, by distance to the crop's edge (in cells), for several ``window_valid_min``. Inner
cells agree on 100 %; a rule that leaves edge cells out is right when the cells it keeps agree too.

Then the ring the issue saw: for the whole scene, each class's share of the cells within 3 cells
of the scene's edge and of the cells further in, for each ``window_valid_min`` (a class the model
invents from padding fills the ring and not the inside); and the same for the fine map (pixels
within 48 px, 3 cells, and within 8 px of the edge against the pixels further in).

Run from the repository root:  PYTHONPATH=. .venv/bin/python benchmarks/window_edges.py [--model M]
(--model: an already fine-tuned model, e.g. one made with the same polygons by an older build)
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import rasterio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.engine import SceneRequest, run_scene  # noqa: E402
from core.io.model_file import read_card  # noqa: E402
from core.fewshot import FinetuneConfig, LabelledPolygon, finetune_from_polygons  # noqa: E402

SPAIN = ROOT / "resources" / "sample" / "spain"
S2, S1 = str(SPAIN / "Spain_7370579_S2Hand.tif"), str(SPAIN / "Spain_7370579_S1Hand.tif")
LABELS = ROOT / "resources" / "sample" / "labels" / "spain_polygons.geojson"
EDGE_IDS = (9, 22, 34, 39)  # polygons within ~40 px of the scene's western edge
INSET = 96  # px: 6 cells of 16 px


def edge_polygons() -> list[LabelledPolygon]:
    out = []
    for f in json.loads(LABELS.read_text())["features"]:
        p = f["properties"]
        if p["quick"] or p["id"] in EDGE_IDS:
            name = "Orchards" if p["labels"] == "Permanent crops" else p["labels"]
            out.append(LabelledPolygon(f["geometry"], [name], p["id"]))
    return out


def dominant(model: str, out: Path, valid_min: float, extent=None):
    run_scene(SceneRequest(model=model, optical=S2, sar=S1, optical_bands=["S2-13"], window_valid_min=valid_min,
                           extent=extent, extent_crs="EPSG:32630" if extent else None, outputs={"dominant": str(out)}))
    with rasterio.open(out) as ds:
        return ds.read(1), ds.transform


def ring_shares(dom: np.ndarray, names: list[str], what: str, width: int = 3) -> str:
    """Each class's share of the given cells in the ring (within ``width`` cells of the edge) and inside."""
    ii, jj = np.indices(dom.shape)
    ring = np.minimum.reduce([ii, jj, dom.shape[0] - 1 - ii, dom.shape[1] - 1 - jj]) <= width
    given = dom != 255
    parts = [f"whole scene, {what}: ring ({width}) {int((ring & given).sum())} of "
             f"{int(ring.sum())} given, inside {int((~ring & given).sum())} of {int((~ring).sum())};"]
    for k in np.unique(dom[given]):
        r = (dom[ring & given] == k).mean() if (ring & given).any() else 0.0
        i = (dom[~ring & given] == k).mean() if (~ring & given).any() else 0.0
        parts.append(f"{names[k]} {100 * r:.1f} % ring / {100 * i:.1f} % inside")
    return "  ".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="use this model instead of fine-tuning one")
    ap.add_argument("--thresholds", nargs="+", type=float, default=[0.0, 0.5, 0.75, 0.9])
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        model = a.model or finetune_from_polygons(str(ROOT / "resources" / "models" / "mosaic-small-ben19"),
                                                  edge_polygons(), "EPSG:4326", S2, S1, tmp / "edge-model",
                                                  FinetuneConfig(), optical_bands="S2-13").card_path
        names = [c["name"] for c in read_card(model)["classes"]]
        full, tf = dominant(model, tmp / "full.tif", 0.0)
        for t in a.thresholds:
            print(ring_shares(full if t == 0.0 else dominant(model, tmp / f"full{t}.tif", t)[0], names,
                              f"window outputs, window_valid_min {t:.2f}"), flush=True)
        card = read_card(model)
        if card.get("pixel_classes"):
            run_scene(SceneRequest(model=model, optical=S2, sar=S1, optical_bands=["S2-13"],
                                   outputs={"fine_classes": str(tmp / "fine.tif")}))
            with rasterio.open(tmp / "fine.tif") as ds:
                fine = ds.read(1)
            fnames = [c["name"] for c in card["pixel_classes"]]
            for width in (48, 8):
                print(ring_shares(fine, fnames, "fine classes (pixels)", width), flush=True)
        x0, y0 = tf.c, tf.f
        h, w = full.shape[0] * 16, full.shape[1] * 16
        ext = (x0 + INSET * 10, y0 - (h - INSET) * 10, x0 + (w - INSET) * 10, y0 - INSET * 10)
        for t in a.thresholds:
            crop, ctf = dominant(model, tmp / f"crop{t}.tif", t, ext)
            r0, c0 = round((y0 - ctf.f) / 160), round((ctf.c - x0) / 160)
            ref = full[r0:r0 + crop.shape[0], c0:c0 + crop.shape[1]]
            both = (crop != 255) & (ref != 255)
            ii, jj = np.indices(crop.shape)
            dist = np.minimum.reduce([ii, jj, crop.shape[0] - 1 - ii, crop.shape[1] - 1 - jj])
            parts = [f"window_valid_min {t:.2f}: {int((crop != 255).sum())} of {crop.size} crop cells given;"]
            for k in range(6):
                m = both & (dist == k)
                if m.any():
                    parts.append(f"{k} from the edge {100 * (crop[m] == ref[m]).mean():.0f} % of {int(m.sum())}")
            m = both & (dist >= 6)
            parts.append(f"inner {100 * (crop[m] == ref[m]).mean():.0f} % of {int(m.sum())}")
            print("  ".join(parts), flush=True)


if __name__ == "__main__":
    main()
