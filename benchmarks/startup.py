"""Start-up cost of a command-line run (not a test): a whole `python -m core classify` of the small
Spain scene against a bare `python -c "import torch, rasterio"`, alternated in one run on the same
machine (these machines are shared: the ratio of medians is what to compare, not the seconds).

Run from the repository root:  PYTHONPATH=. .venv/bin/python benchmarks/startup.py [RUNS]
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPAIN = ROOT / "resources" / "sample" / "spain"


def seconds(command: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, cwd=ROOT)
    return time.perf_counter() - t0


def main(runs: int = 5) -> None:
    with tempfile.TemporaryDirectory(prefix="mosaic-startup-") as d:
        bare = [sys.executable, "-c", "import torch, rasterio"]
        classify = [sys.executable, "-m", "core", "classify", "--optical", str(SPAIN / "Spain_7370579_S2Hand.tif"),
                    "--sar", str(SPAIN / "Spain_7370579_S1Hand.tif"), "--dominant", str(Path(d) / "d.tif"),
                    "--quiet"]
        seconds(bare)  # warm the file cache for both
        times: dict[str, list[float]] = {"bare": [], "classify": []}
        for _ in range(runs):
            times["bare"].append(seconds(bare))
            times["classify"].append(seconds(classify))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"import torch, rasterio: median {med['bare']:.2f} s  ({', '.join(f'{t:.2f}' for t in times['bare'])})")
    print(f"CLI classify, Spain:    median {med['classify']:.2f} s  "
          f"({', '.join(f'{t:.2f}' for t in times['classify'])})")
    print(f"ratio {med['classify'] / med['bare']:.2f}x (target of issue 20: 1.4x)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
