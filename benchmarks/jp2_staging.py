"""JPEG 2000 inputs decoded once (core/engine/staging.py) against block by block (not a test).

Sentinel-2 products ship each band as a lossless JPEG 2000 file. This writes such a set from
the real L1C bands of ../shared/data/s2-l1c-usa (or the repository's crops of them), mirrored
out to SIZE x SIZE at 10 m (SIZE/2 at 20 m, SIZE/6 at 60 m; 1024 px tiles), stacks them in a VRT
as the CLI does, and runs the dense engine over it in alternation, one subprocess each, with
``stage="never"`` and ``stage="auto"``: time, peak RSS, and whether the probabilities agree.

With ``--short-disk`` a third kind of run joins them: ``auto`` on a disk said to have room for
60 % of the uncompressed copy beside the outputs (``room_left`` is told so), which then writes
it compressed.

With ``--codec deflate`` the band files are deflate-compressed GeoTIFFs instead, and the runs
compare ``never`` with ``always`` (``auto`` leaves such files alone: this is why). With
``--stage-only`` it times the staging copy alone (``core.engine.staging.stage``, all 12
bands), e.g. of a full 10980² tile, with its peak RSS.

Run from the repository root:  PYTHONPATH=. .venv/bin/python benchmarks/jp2_staging.py [--size 4098] [--rounds 2]
                               [--codec jp2|deflate] [--tile 512] [--stage-only] [--short-disk]
"""
from __future__ import annotations

import argparse
import glob
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MODEL = str(ROOT / "resources" / "models" / "mosaic-small-ben19")
SOURCES = [ROOT.parent / "shared" / "data" / "s2-l1c-usa", ROOT / "tests" / "data" / "s2-l1c-usa"]

from core.engine.align import build_band_vrt  # noqa: E402


def write_jp2_bands(folder: Path, size: int, codec: str = "jp2", tile: int | None = None) -> list[str]:
    """The USA L1C bands (B10 left out: the model does not take it) mirrored to ``size`` px at
    10 m, written as lossless JPEG 2000 in 1024 px tiles (``codec="deflate"``: deflate GeoTIFFs
    in 512 px tiles, or ``tile``), each band at its own resolution."""
    from osgeo import gdal

    src_dir = next(d for d in SOURCES if d.is_dir())
    out = []
    for p in sorted(glob.glob(str(src_dir / "s2_B*.jp2"))):
        if p.endswith("B10.jp2"):
            continue
        with rasterio.open(p) as s:
            a, crs, tf = s.read(1), s.crs, s.transform
        n = size * 10 // int(round(tf.a))
        a = np.pad(a, ((0, max(0, n - a.shape[0])), (0, max(0, n - a.shape[1]))), mode="symmetric")[:n, :n]
        tif = folder / (Path(p).stem + ".tif")
        t = tile or 512
        extra = dict(tiled=True, blockxsize=t, blockysize=t, compress="deflate", predictor=2) if codec == "deflate" else {}
        with rasterio.open(tif, "w", driver="GTiff", width=n, height=n, count=1, dtype=a.dtype, crs=crs,
                           transform=tf, nodata=0, **extra) as d:
            d.write(a, 1)
        if codec == "deflate":
            out.append(str(tif))
            continue
        jp2 = folder / Path(p).name
        ds = gdal.Translate(str(jp2), str(tif), format="JP2OpenJPEG",
                            creationOptions=["REVERSIBLE=YES", "QUALITY=100", "BLOCKXSIZE=1024", "BLOCKYSIZE=1024"])
        ds = None
        tif.unlink()
        out.append(str(jp2))
    return out


CHILD = r"""
import json, sys, time
sys.path.insert(0, {root!r})
from core.engine import SceneRequest, run_scene, scene_inputs
if {short!r}:  # room for 60 % of the uncompressed copy beside the outputs: it is compressed
    import rasterio
    from rasterio.windows import Window
    with rasterio.open({vrt!r}) as s:
        full = scene_inputs.staged_bytes(s, list(range(1, s.count + 1)), Window(0, 0, s.width, s.height))
    scene_inputs.room_left = lambda needs, path: int(0.6 * full)
t = time.perf_counter()
r = run_scene(SceneRequest(model={model!r}, optical={vrt!r}, mode="dense", stage="auto" if {short!r} else {stage!r},
                           probability_dtype="float32", outputs={{"probabilities": {out!r}}}))
hwm = [int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")][0]
print(json.dumps({{"seconds": time.perf_counter() - t, "maxrss_mb": hwm / 1024, "staged": r.staged,
                  "compressed": any("compressed into" in w for w in r.warnings)}}))
"""


STAGE_CHILD = r"""
import json, sys, time
import rasterio
from rasterio.windows import Window
sys.path.insert(0, {root!r})
from core.engine.staging import stage
t = time.perf_counter()
with rasterio.open({vrt!r}) as s:
    w, h, n = s.width, s.height, s.count
stage({vrt!r}, list(range(1, n + 1)), Window(0, 0, w, h), {out!r})
hwm = [int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")][0]
print(json.dumps({{"seconds": time.perf_counter() - t, "maxrss_mb": hwm / 1024}}))
"""


def run_child(vrt: str, stage: str, out: str) -> dict:
    code = (STAGE_CHILD if stage == "only" else CHILD).format(root=str(ROOT), model=MODEL, vrt=vrt, stage=stage,
                                                              out=out, short=stage == "short-disk")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=4098, help="10 m pixels a side (a multiple of 6)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--codec", default="jp2", choices=["jp2", "deflate"], help="how the band files are compressed")
    ap.add_argument("--tile", type=int, default=None, help="tile size of deflate band files (default 512)")
    ap.add_argument("--stage-only", action="store_true", help="time the staging copy alone")
    ap.add_argument("--short-disk", action="store_true", help="also runs whose copy is compressed for lack of room")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="mosaic-jp2-") as tmp:
        d = Path(tmp)
        t = time.perf_counter()
        bands = write_jp2_bands(d, a.size, a.codec, a.tile)
        vrt = build_band_vrt(bands, str(d / "s2.vrt"))
        mb = sum(Path(b).stat().st_size for b in bands) / 2**20
        kind = "JPEG 2000" if a.codec == "jp2" else f"deflate GeoTIFF ({a.tile or 512} px tiles)"
        print(f"{len(bands)} {kind} band files of real L1C content, {a.size}^2 at 10 m, {mb:.0f} MB "
              f"(written in {time.perf_counter() - t:.0f} s)")
        if a.stage_only:
            res = run_child(vrt, "only", str(d / "staged.tif"))
            print(f"staged in {res['seconds']:.1f} s, peak RSS {res['maxrss_mb']:.0f} MB")
            return
        staged = "auto" if a.codec == "jp2" else "always"
        runs: dict[str, list[dict]] = {"never": [], staged: [], **({"short-disk": []} if a.short_disk else {})}
        for r in range(a.rounds):
            for stage in runs:
                res = run_child(vrt, stage, str(d / f"p_{stage}_{r}.tif"))
                runs[stage].append(res)
                print(f"round {r + 1}, stage={stage}: {res['seconds']:.1f} s, peak RSS {res['maxrss_mb']:.0f} MB"
                      f"{', staged: ' + ', '.join(res['staged'].values()) if res['staged'] else ''}"
                      f"{' (compressed copy)' if res['compressed'] else ''}", flush=True)
        best = {k: min(x["seconds"] for x in v) for k, v in runs.items()}
        ratios = " / ".join(f"{n['seconds'] / s['seconds']:.2f}x" for n, s in zip(runs["never"], runs[staged]))
        print(f"decoded once is {best['never'] / best[staged]:.2f}x as fast (best of each; round by round {ratios})")
        if a.short_disk:
            ratios = " / ".join(f"{n['seconds'] / s['seconds']:.2f}x"
                                for n, s in zip(runs["never"], runs["short-disk"]))
            print(f"decoded once into a compressed copy (short of disk space) is "
                  f"{best['never'] / best['short-disk']:.2f}x as fast as reading as is, "
                  f"{best['short-disk'] / best[staged]:.2f}x the time of the uncompressed copy "
                  f"(best of each; round by round against as is {ratios})")
        with rasterio.open(d / "p_never_0.tif") as x:
            p = x.read()
        for other in [k for k in runs if k != "never"]:
            with rasterio.open(d / f"p_{other}_0.tif") as y:
                q = y.read()
            same = np.array_equal(p, q, equal_nan=True)
            print(f"probabilities (float32) of stage={other} identical to reading as is: {same}"
                  f"{'' if same else f', max difference {np.nanmax(np.abs(p - q)):.2e}'}")


if __name__ == "__main__":
    main()
