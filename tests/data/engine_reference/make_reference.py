"""Writes reference.npz: the bundled model's window probabilities on the real Spain S1+S2 scene and
the USA L1C crop, dense and sliding, as the engine computes them now.

tests/core/test_engine_reference.py compares every run with it, so a refactor of the engine that
changes a number fails. Rerun this (``.venv/bin/python tests/data/engine_reference/make_reference.py``)
only when the outputs are meant to change (a new bundled model, a new pooling rule), and say why
in the commit.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import rasterio

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from core.engine import SceneRequest, run_scene  # noqa: E402
from core.engine.align import build_band_vrt  # noqa: E402

MODEL = str(ROOT / "resources" / "models" / "mosaic-small-ben19")
SPAIN = ROOT / "resources" / "sample" / "spain"
USA = sorted(str(p) for p in (ROOT / "tests" / "data" / "s2-l1c-usa").glob("s2_B*.jp2"))
CASES = {  # name -> request fields (besides the model and the output)
    "spain_dense": dict(optical=str(SPAIN / "Spain_7370579_S2Hand.tif"), sar=str(SPAIN / "Spain_7370579_S1Hand.tif"),
                        optical_bands=["S2-13"], mode="dense"),
    "spain_sliding": dict(optical=str(SPAIN / "Spain_7370579_S2Hand.tif"), sar=str(SPAIN / "Spain_7370579_S1Hand.tif"),
                          optical_bands=["S2-13"], mode="sliding"),
    "usa_dense": dict(optical="USA", optical_bands=["S2-13"], mode="dense"),
    "usa_sliding": dict(optical="USA", optical_bands=["S2-13"], mode="sliding", stride=40),
}


def probabilities(name: str, tmp: Path) -> np.ndarray:
    """float32 [K, rows, cols] window probabilities of case ``name`` (NaN = no data)."""
    fields = dict(CASES[name])
    if fields.get("optical") == "USA":
        fields["optical"] = build_band_vrt(USA, str(tmp / f"{name}.vrt"))
    out = tmp / f"{name}.tif"
    run_scene(SceneRequest(model=MODEL, outputs={"probabilities": str(out)}, probability_dtype="float32", **fields))
    with rasterio.open(out) as ds:
        return ds.read()


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as d:
        arrays = {name: probabilities(name, Path(d)) for name in CASES}
    np.savez_compressed(Path(__file__).with_name("reference.npz"), **arrays)
    print({k: v.shape for k, v in arrays.items()})
