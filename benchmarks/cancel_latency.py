"""How long Cancel takes (not a test): the seconds from the moment ``is_cancelled`` starts returning
True to the moment the call gives up (``Cancelled`` raised, every temporary file gone), for

- a classify with window and fine outputs on a 4096 x 4096 synthetic S2 + S1 scene (2048 px blocks),
- the whole fine-tuning from the 43 Spain polygons (windows, cached heads, pixels, cross-validation),

cancelled at several moments of each. The dock and Processing poll the same ``is_cancelled``.

Run from the repository root:  PYTHONPATH=. .venv/bin/python benchmarks/cancel_latency.py
"""
from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from fine_outputs import model_with_pixel_head  # noqa: E402
from scene_benchmark import write_scene  # noqa: E402

from core.engine import Cancelled, SceneRequest, run_scene  # noqa: E402
from core.fewshot import Cancelled as FinetuneCancelled  # noqa: E402
from core.fewshot import FinetuneConfig, finetune_from_polygons  # noqa: E402
from core.fewshot.label_file import read_label_file  # noqa: E402

SPAIN = ROOT / "resources" / "sample" / "spain"


def latency(call, at: float) -> float | None:
    """Seconds from cancelling (``at`` s after the start, as a click would: the call sees it at its
    next ``is_cancelled`` poll) to the call's end; None if it ended first."""

    def is_cancelled() -> bool:
        return time.perf_counter() - start >= at

    start = time.perf_counter()
    try:
        call(is_cancelled)
    except (Cancelled, FinetuneCancelled):
        return time.perf_counter() - (start + at)
    return None


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="mosaic-cancel-") as d:
        tmp = Path(d)
        s2, s1 = write_scene(tmp, 4096)
        model = model_with_pixel_head(tmp)
        outs = {k: str(tmp / f"{k}.tif") for k in ("probabilities", "dominant", "fine_classes", "fine_uncertainty")}

        def classify(is_cancelled):
            run_scene(SceneRequest(model=model, optical=s2, sar=s1, outputs=outs), is_cancelled=is_cancelled)

        polygons, crs = read_label_file(ROOT / "resources" / "sample" / "labels" / "spain_polygons.geojson")

        def tune(is_cancelled):
            finetune_from_polygons(str(ROOT / "resources" / "models" / "mosaic-small-ben19"), polygons, crs,
                                   str(SPAIN / "Spain_7370579_S2Hand.tif"), str(SPAIN / "Spain_7370579_S1Hand.tif"),
                                   tmp / "tuned", FinetuneConfig(), optical_bands="S2-13", is_cancelled=is_cancelled)

        for name, call, moments in (("classify 4096^2 S2+S1, window + fine", classify, (1, 3, 6, 9, 12, 15)),
                                    ("fine-tune, 43 Spain polygons", tune, (1, 3, 6, 10, 15, 20, 25))):
            got = []
            for at in moments:
                lat = latency(call, at)
                got.append(lat)
                print(f"{name}: cancelled at {at:4.1f} s -> stopped {'(ended first)' if lat is None else f'{lat:.2f} s later'}",
                      flush=True)
                left = sorted(p.name for p in tmp.iterdir() if p.name.startswith(".") or p.name.startswith("tuned"))
                assert not left, f"left behind: {left}"
            done = [x for x in got if x is not None]
            print(f"{name}: worst {max(done):.2f} s, median {sorted(done)[len(done) // 2]:.2f} s over {len(done)} cancels\n")


if __name__ == "__main__":
    main()
