"""Real signals to real child processes (``python -m core classify``): SIGTERM (what ``timeout`` and
a shutdown send) and Ctrl-C stop a run like Cancel (exit 143 / 130, "cancelled", every temporary
deleted, an earlier output at the same path untouched); after SIGKILL, which nothing can catch,
the next run beside the same outputs deletes what the killed one left."""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.synthetic import write_s2_s1

ROOT = Path(__file__).resolve().parents[2]
SIZE = 1024  # a run of several seconds on 2 cores: long enough to be caught in the middle


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> tuple[str, str]:
    return write_s2_s1(tmp_path_factory.mktemp("scene"), SIZE)


def start(scene, out: Path, tmp: Path) -> subprocess.Popen:
    s2, s1 = scene
    env = dict(os.environ, TMPDIR=str(tmp))
    # Ctrl-C as in a terminal: a suite started in the background (``make test &``) hands its
    # children SIGINT ignored, and Python then keeps ignoring it, as a background job should
    return subprocess.Popen([sys.executable, "-m", "core", "classify", "--optical", s2, "--sar", s1, "--quiet",
                             "--dominant", str(out / "d.tif"), "--probabilities", str(out / "p.tif")],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def wait_for_temporaries(proc: subprocess.Popen, out: Path, timeout: float = 120) -> None:
    """Until the run has both temporary outputs and its feature store open: it is in the middle of
    the work (the encoders' pass), seconds before it ends."""
    t = time.monotonic()
    while not (list(out.glob(f".d.tif.{proc.pid}.*")) and list(out.glob(f".p.tif.{proc.pid}.*.features"))):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - t < timeout
        time.sleep(0.05)


@pytest.fixture
def dirs(tmp_path) -> tuple[Path, Path]:
    out, tmp = tmp_path / "out", tmp_path / "tmp"
    out.mkdir()
    tmp.mkdir()
    return out, tmp


@pytest.mark.parametrize("sig,code,why", [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "Ctrl-C")],
                         ids=["SIGTERM", "SIGINT"])
def test_a_stopped_run_cleans_up_and_keeps_earlier_outputs(scene, dirs, sig, code, why):
    out, tmp = dirs
    (out / "d.tif").write_bytes(b"an earlier output")
    before = hashlib.sha256((out / "d.tif").read_bytes()).hexdigest()
    proc = start(scene, out, tmp)
    wait_for_temporaries(proc, out)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert f"cancelled ({why})" in err and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["d.tif"]
    assert hashlib.sha256((out / "d.tif").read_bytes()).hexdigest() == before
    assert not list(tmp.glob("mosaic-*"))


def test_after_sigkill_the_next_run_deletes_what_was_left(scene, dirs):
    out, tmp = dirs
    proc = start(scene, out, tmp)
    wait_for_temporaries(proc, out)
    proc.kill()
    proc.communicate(timeout=60)
    left = [p.name for p in out.iterdir()]
    assert any(n.startswith(".d.tif.") for n in left) and any(n.startswith(".p.tif.") for n in left)
    assert list(tmp.glob("mosaic-scene-*"))  # the scratch folder of the killed run
    proc = start(scene, out, tmp)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "temporary file(s)" in err and "left when it was stopped" in err
    assert sorted(p.name for p in out.iterdir()) == ["d.tif", "p.tif"]
    assert not list(tmp.glob("mosaic-*"))
