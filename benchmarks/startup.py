"""Start-up cost of a command-line run (not a test): a whole `python -m core classify` of the small
Spain scene against a bare `python -c "import torch, rasterio"`, alternated in one run on the same
machine (these machines are shared: the ratio of medians is what to compare, not the seconds).

The Spain sample is in EPSG:4326, so the engine warps it to a 10 m UTM grid as it reads (GDAL's
bilinear warp, 0.6-0.8 s of the run here). The same scene already on that grid (warped once by
this script, before the timing) shows what the run costs without that scene-specific work.

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
sys.path.insert(0, str(ROOT))
SPAIN = ROOT / "resources" / "sample" / "spain"


def seconds(command: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, cwd=ROOT)
    return time.perf_counter() - t0


def on_grid_copy(src_path: Path, out: Path) -> str:
    """``src_path`` warped to the 10 m UTM grid the engine reads it on, as float32 (NaN: no data)."""
    import numpy as np
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT

    from core.engine.align import reference_grid

    with rasterio.open(src_path) as src, rasterio.open(SPAIN / "Spain_7370579_S2Hand.tif") as s2:
        grid, _ = reference_grid(s2, [], 10.0, None, None)
        with WarpedVRT(src, crs=grid.crs, transform=grid.transform, width=grid.width, height=grid.height,
                       resampling=Resampling.bilinear, nodata=np.nan, dtype="float32") as vrt:
            profile = dict(driver="GTiff", width=grid.width, height=grid.height, count=src.count, dtype="float32",
                           crs=grid.crs, transform=grid.transform, nodata=np.nan, tiled=True)
            with rasterio.open(out, "w", **profile) as dst:
                dst.write(vrt.read())
                dst.descriptions = src.descriptions
    return str(out)


def main(runs: int = 5) -> None:
    with tempfile.TemporaryDirectory(prefix="mosaic-startup-") as d:
        bare = [sys.executable, "-c", "import torch, rasterio"]
        inputs = {"Spain": [SPAIN / "Spain_7370579_S2Hand.tif", SPAIN / "Spain_7370579_S1Hand.tif"]}
        inputs["Spain on its grid"] = [on_grid_copy(p, Path(d) / f"grid_{p.name}") for p in inputs["Spain"]]
        commands = {"import torch, rasterio": bare}
        for name, (s2, s1) in inputs.items():
            commands[f"CLI classify, {name}"] = [
                sys.executable, "-m", "core", "classify", "--optical", str(s2), "--sar", str(s1),
                "--optical-bands", "S2-13", "--dominant", str(Path(d) / "d.tif"), "--quiet"]
        seconds(bare)  # warm the file cache for all
        times: dict[str, list[float]] = {k: [] for k in commands}
        for _ in range(runs):
            for k, c in commands.items():
                times[k].append(seconds(c))
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in times.items():
        print(f"{k + ':':33} median {med[k]:.2f} s  ({', '.join(f'{t:.2f}' for t in v)})")
    for k in list(commands)[1:]:
        print(f"ratio, {k}: {med[k] / med['import torch, rasterio']:.2f}x (target of issue 20: 1.4x)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
