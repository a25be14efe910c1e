"""The band-order check on every real Sentinel-2 scene of ../shared/data (not a test): how often
each relation of ``core.engine.band_check.RULES`` holds when the bands are read right, and
when they are read in the orders analysts get wrong; and what the check says in each case.

- right: the bands named from the file (descriptions or band file names);
- file-name order: the band files stacked as ``gdalbuildvrt -separate`` does (B8A last) and
  read as the usual 13- or 12-band order (the issue's case);
- B02<->B04: blue and red swapped (an RGB-ordered stack read as BGR);
- reversed: the whole stack read backwards.

Run from the repository root:  PYTHONPATH=. .venv/bin/python benchmarks/band_check_scenes.py
Writes docs/engine/band_check.txt.
"""
from __future__ import annotations

import glob
import sys
import tempfile
from pathlib import Path

import numpy as np
import rasterio
from osgeo import gdal

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.engine.align import sample_values  # noqa: E402
from core.engine.band_check import NEAR, RULES, band_value_warnings  # noqa: E402
from core.engine.band_mapping import S2_12, S2_13, canonical_band  # noqa: E402
from core.io.model_file import read_card  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
SCENES = {  # name -> (one stack or band files, L2A offset in digital numbers)
    "Spain L1C (sen1floods11)": (DATA / "sen1floods11-spain" / "Spain_7370579_S2Hand.tif", 0),
    "Germany L1C (winter)": ("s2-l1c-germany/*.jp2", 0),
    "USA L1C": ("s2-l1c-usa/*.jp2", 0),
    "Central Africa L2A N0400": ("unlabelled/major-tom/S2L2A/0U/*/*/B*.tif", 1000),
    "South-East Asia L2A": ("unlabelled/major-tom/S2L2A/199U/*/*/B*.tif", 0),
    "India L2A (SSL4EO)": ("unlabelled/ssl4eo-s12/s2a/0000200/20200604*/B*.tif", 0),
    "India L1C (SSL4EO)": ("unlabelled/ssl4eo-s12/s2c/0000200/20200604*/B*.tif", 0),
}


def scene_values(spec, tmp: Path) -> tuple[dict[str, np.ndarray], list[str]]:
    """(band name -> sampled values, the band names in file-name order)."""
    if isinstance(spec, Path):
        with rasterio.open(spec) as src:
            v = sample_values(src, list(range(1, src.count + 1)))
        names = list(S2_13)
    else:
        files = sorted(glob.glob(str(DATA / spec)))
        names = [canonical_band(Path(f).stem) for f in files]
        vrt = tmp / f"{abs(hash(spec))}.vrt"
        gdal.BuildVRT(str(vrt), files, separate=True, resolution="highest").FlushCache()
        with rasterio.open(vrt) as src:
            v = sample_values(src, list(range(1, src.count + 1)))
    v = v[:, (v > 0).all(0)]
    return dict(zip(names, v)), sorted(names, key=lambda b: b.replace("B8A", "B99"))


def held(values: dict[str, np.ndarray]) -> list[str]:
    out = []
    for a, b, test, _, _ in RULES:
        if a in values and b in values:
            va, vb = values[a], values[b]
            ratio = va / np.where(vb == 0, np.nan, vb)
            f = np.mean(va > vb) if test == "above" else np.mean((ratio > NEAR[0]) & (ratio < NEAR[1]))
            out.append(f"{f:5.0%}")
    return out


def main() -> None:
    card = read_card(str(ROOT / "resources" / "models" / "mosaic-small-ben19"))
    means = dict(zip(card["inputs"]["s2"]["bands"], card["inputs"]["s2"]["mean"]))
    rules = [f"{a}{'>' if t == 'above' else '~'}{b}" for a, b, t, _, _ in RULES if a.startswith("B")]
    lines = [f"{'scene':27s} {'read as':18s} " + " ".join(f"{r:>7s}" for r in rules) + "  check"]
    with tempfile.TemporaryDirectory() as d:
        for name, (spec, offset) in SCENES.items():
            values, file_order = scene_values(spec, Path(d))
            values = {b: v - offset for b, v in values.items()}
            preset = S2_13 if "B10" in values else S2_12
            cases = {
                "right": values,
                "file-name order": {preset[i]: values[file_order[i]] for i in range(len(preset))},
                "B02<->B04": {**values, "B02": values["B04"], "B04": values["B02"]},
                "reversed": {b: values[r] for b, r in zip(preset, reversed(preset))},
            }
            for case, vals in cases.items():
                model = {b: v for b, v in vals.items() if b in means}
                warns = band_value_warnings(model, means, "optical", case)
                verdict = "warns" if warns else "quiet"
                lines.append(f"{name:27s} {case:18s} " + " ".join(f"{h:>7s}" for h in held(model)) + f"  {verdict}")
    text = "\n".join(lines)
    print(text)
    (ROOT / "docs" / "engine" / "band_check.txt").write_text(
        "Fraction of sampled pixels on which each relation holds (band_check.RULES), and whether the check\n"
        "warns. Produced by benchmarks/band_check_scenes.py on ../shared/data.\n\n" + text + "\n")


if __name__ == "__main__":
    main()
