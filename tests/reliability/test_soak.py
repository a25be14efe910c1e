"""The reliability soak (``make test-reliability``, minutes; not in ``make test``): runs of
``python -m core classify`` killed at random moments, SIGKILL or SIGTERM, one after the other
beside the same outputs, then a clean run.

After every kill the outputs at the destination paths are either absent, or the complete files
of an earlier finished run (byte for byte); a SIGTERM leaves no temporary; whatever a SIGKILL
left is deleted by the next run. After the clean run only the outputs remain, beside them and
in the temporary folder.
"""
from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import rasterio

from tests.synthetic import write_s2_s1

ROOT = Path(__file__).resolve().parents[2]
RUNS = int(os.environ.get("MOSAIC_SOAK_RUNS", "20"))
SIZE = 768


def _digests(out: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.iterdir() if not p.name.startswith(".")}


def _whole(path: Path) -> bool:
    """A complete GeoTIFF: opens, and every band and overview reads without error."""
    try:
        with rasterio.open(path) as ds:
            ds.read()
            for f in ds.overviews(1):
                ds.read(out_shape=(ds.count, max(1, ds.height // f), max(1, ds.width // f)))
        return True
    except rasterio.errors.RasterioError:
        return False


def test_killed_runs_never_leave_a_broken_output_or_a_temporary(tmp_path):
    s2, s1 = write_s2_s1(tmp_path, SIZE)
    out, tmp = tmp_path / "out", tmp_path / "tmp"
    out.mkdir()
    tmp.mkdir()
    cmd = [sys.executable, "-m", "core", "classify", "--optical", s2, "--sar", s1, "--quiet",
           "--dominant", str(out / "d.tif"), "--probabilities", str(out / "p.tif"), "--uncertainty", str(out / "u.tif")]
    env = dict(os.environ, TMPDIR=str(tmp))
    # one finished run: the reference of a complete output
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True)
    finished = _digests(out)
    assert set(finished) == {"d.tif", "p.tif", "u.tif"}
    rng = random.Random(0)
    for i in range(RUNS):
        sig = rng.choice([signal.SIGKILL, signal.SIGTERM])
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(rng.uniform(0.5, 12.0))
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
        # every output is still there and whole: the earlier run's file, or this run's complete one
        now = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
        assert now == ["d.tif", "p.tif", "u.tif"], (i, sig, err)
        assert all(_whole(out / n) for n in now), (i, sig, err)
        if proc.returncode == 143:
            assert "cancelled (SIGTERM)" in err
            assert not [p.name for p in out.iterdir() if f".{proc.pid}." in p.name], (i, err)
        else:
            # killed (a SIGTERM before the handler is set, in the first second, kills too), or finished first
            assert proc.returncode in (-signal.SIGKILL, -signal.SIGTERM, 0), (i, sig, proc.returncode, err)
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert set(_digests(out)) == set(finished) and all(_whole(out / n) for n in finished)
    assert sorted(p.name for p in out.iterdir()) == ["d.tif", "p.tif", "u.tif"]
    assert not list(tmp.glob("mosaic-*"))
