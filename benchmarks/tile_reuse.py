"""Decoded columns kept from one block's read for the next (core/engine/band_reader.py; not a test).

A dense block reads 64 px of halo beyond its own cells, so it decodes whole tiles of its
neighbours; read on its own, the neighbour decodes them again. This writes a 12-band uint16
Sentinel-2 stack at 10 m from the real L1C bands of ../shared/data/s2-l1c-usa (or the
repository's crops of them: 20 and 60 m bands repeated to 10 m, mirrored out to SIZE x SIZE)
as a deflate GeoTIFF (predictor 2, pixel-interleaved, as GDAL writes a stack) in 1024 px tiles
(the Sentinel-2 COGs' tiling) and in 512 px tiles, and measures, alternated over ROUNDS:

- reading only: the engine's dense blocks (2048 px, halo 64) through ``BandReader`` with and
  without ``then`` (the next block), and each block's own 2048² cells alone (no halo, each tile
  decoded once: the floor), with the values compared;
- whole dense runs of the optical input (one subprocess each; keeping switched off in the
  child for the "without" runs): time, peak RSS, and whether the probabilities are identical.

Run from the repository root:  PYTHONPATH=. .venv/bin/python benchmarks/tile_reuse.py [--size 6144] [--rounds 2]
"""
from __future__ import annotations

import argparse
import glob
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MODEL = str(ROOT / "resources" / "models" / "mosaic-small-ben19")
SOURCES = [ROOT.parent / "shared" / "data" / "s2-l1c-usa", ROOT / "tests" / "data" / "s2-l1c-usa"]

from core.data.bands import S2_BANDS  # noqa: E402
from core.engine import windows as W  # noqa: E402
from core.engine.align import Grid  # noqa: E402
from core.engine.band_reader import BandReader  # noqa: E402


def write_stack(folder: Path, size: int, tiles: tuple[int, ...]) -> dict[int, str]:
    """The USA L1C bands the model takes, at 10 m, mirrored to ``size`` px, as one deflate
    GeoTIFF per tile size."""
    src_dir = next(d for d in SOURCES if d.is_dir())
    bands, crs, tf = [], None, None
    for b in S2_BANDS:
        with rasterio.open(src_dir / f"s2_{b}.jp2") as s:
            a = s.read(1)
            f = int(round(s.transform.a)) // 10
            if f == 1:
                crs, tf = s.crs, s.transform
        a = a.repeat(f, 0).repeat(f, 1)
        bands.append(np.pad(a, ((0, max(0, size - a.shape[0])), (0, max(0, size - a.shape[1]))),
                            mode="symmetric")[:size, :size])
    stack = np.stack(bands)
    out = {}
    for t in tiles:
        p = folder / f"s2_{size}_tiles{t}.tif"
        with rasterio.open(p, "w", driver="GTiff", width=size, height=size, count=12, dtype="uint16", crs=crs,
                           transform=tf, nodata=0, tiled=True, blockxsize=t, blockysize=t, compress="deflate",
                           predictor=2) as d:
            for i, b in enumerate(S2_BANDS, 1):
                d.set_band_description(i, b)
            d.write(stack)
        out[t] = str(p)
    return out


def read_blocks(path: str, keep: bool, halo: int = 64) -> tuple[float, str]:
    """Seconds to read the engine's dense blocks (or, with ``halo=0``, each block's own cells)
    in their stored type, and a digest of the values."""
    with rasterio.open(path) as s:
        grid = Grid(s.crs, s.transform, s.width, s.height)
    blocks = list(W.iter_blocks(grid.height, grid.width, 16, 2048, halo, 16))
    r = BandReader(path, list(range(1, 13)), grid, True)
    digest, dt = hashlib.sha256(), 0.0
    try:
        for k, b in enumerate(blocks):
            n = blocks[k + 1] if keep and k + 1 < len(blocks) else None
            then = None if n is None else (n.read_row0, n.read_col0, n.read_rows, n.read_cols)
            t = time.perf_counter()
            v, invalid = r.read_stored(b.read_row0, b.read_col0, b.read_rows, b.read_cols, True, then=then)
            dt += time.perf_counter() - t
            digest.update(np.ascontiguousarray(v).tobytes())
            digest.update(invalid.tobytes())
    finally:
        r.close()
    return dt, digest.hexdigest()


CHILD = r"""
import json, sys, time
sys.path.insert(0, {root!r})
from core.engine import SceneRequest, run_scene
from core.engine.band_reader import BandReader
if not {keep!r}:
    BandReader._keep_plan = lambda self, win, then: None
t = time.perf_counter()
run_scene(SceneRequest(model={model!r}, optical={path!r}, mode="dense", probability_dtype="float32",
                       outputs={{"probabilities": {out!r}}}))
hwm = [int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")][0]
print(json.dumps({{"seconds": time.perf_counter() - t, "maxrss_mb": hwm / 1024}}))
"""


def run_child(path: str, keep: bool, out: str) -> dict:
    code = CHILD.format(root=str(ROOT), model=MODEL, path=path, keep=keep, out=out)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=6144)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="mosaic-tiles-") as tmp:
        tmp = Path(tmp)
        files = write_stack(tmp, a.size, (1024, 512))
        print(f"{a.size}^2 12-band uint16 stack from the real USA L1C bands; "
              f"{W.count_blocks(a.size, a.size, 16, 2048)} dense blocks of 2048 px (read {2048 + 128} px)")
        for t, path in files.items():
            mb = Path(path).stat().st_size / 2**20
            raw = a.size * a.size * 12 * 2 / 2**20
            print(f"\ndeflate, {t} px tiles: {mb:.0f} MB ({raw / mb:.1f}x smaller than the raw {raw:.0f} MB)")
            reads: dict[str, list[float]] = {"without": [], "kept": [], "own cells only": []}
            digests = {}
            for _ in range(a.rounds):
                for label, keep, halo in (("without", False, 64), ("kept", True, 64), ("own cells only", False, 0)):
                    dt, digests[label, halo] = read_blocks(path, keep, halo)
                    reads[label].append(dt)
            same = digests["without", 64] == digests["kept", 64]
            print("  reading the blocks: " + "; ".join(f"{k} {' / '.join(f'{s:.2f}' for s in v)} s"
                                                      for k, v in reads.items()))
            print(f"  -> keeping {min(reads['without']) / min(reads['kept']):.2f}x faster (best of each); "
                  f"{min(reads['kept']) / min(reads['own cells only']):.2f}x the floor "
                  f"(was {min(reads['without']) / min(reads['own cells only']):.2f}x); values identical: {same}")
            runs: dict[bool, list[dict]] = {False: [], True: []}
            for _ in range(a.rounds):
                for keep in (False, True):
                    runs[keep].append(run_child(path, keep, str(tmp / f"p_{t}_{keep}.tif")))
            with rasterio.open(tmp / f"p_{t}_False.tif") as x, rasterio.open(tmp / f"p_{t}_True.tif") as y:
                identical = all(np.array_equal(x.read(window=w), y.read(window=w)) for _, w in x.block_windows(1))
            for keep in (False, True):
                print(f"  whole dense run, {'kept' if keep else 'without'}: "
                      + " / ".join(f"{r['seconds']:.1f} s" for r in runs[keep])
                      + ", peak RSS " + " / ".join(f"{r['maxrss_mb']:.0f}" for r in runs[keep]) + " MB")
            best = {k: min(r["seconds"] for r in v) for k, v in runs.items()}
            print(f"  -> {best[False] / best[True]:.2f}x faster (best of each); probabilities identical: {identical}")


if __name__ == "__main__":
    main()
