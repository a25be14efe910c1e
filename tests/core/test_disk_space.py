"""The free-space check before a run: a full disk is a clear error up front, not a failure
after minutes of computing, and the estimate covers what a run really writes."""
from __future__ import annotations

import os
from collections import namedtuple

import pytest

from core.engine import SceneRequest, dense, plan, run_scene
from core.engine import disk_space
from core.engine.disk_space import check_free_space, room_left

from .test_engine_edges import MODEL, _raster, _tf

Usage = namedtuple("Usage", "total used free")


def _free(monkeypatch, nbytes: int) -> None:
    monkeypatch.setattr(disk_space.shutil, "disk_usage", lambda p: Usage(10 * nbytes, 9 * nbytes, nbytes))


def test_needs_on_one_file_system_add_up(tmp_path, monkeypatch):
    _free(monkeypatch, 100)
    check_free_space([(str(tmp_path / "a.tif"), 60), (str(tmp_path / "b.tif"), 40)])
    with pytest.raises(ValueError, match=r"not enough free disk space in .*writes up to"):
        check_free_space([(str(tmp_path / "a.tif"), 60), (str(tmp_path / "sub" / "b.tif"), 41)])


def test_room_left_counts_the_needs_on_the_same_file_system(tmp_path, monkeypatch):
    _free(monkeypatch, 100)
    assert room_left([(str(tmp_path / "a.tif"), 60)], str(tmp_path / "sub" / "copy.tif")) == 40
    assert room_left([(str(tmp_path / "a.tif"), 60), (str(tmp_path / "b.tif"), 70)], str(tmp_path / "c")) == -30


def test_a_run_that_would_fill_the_disk_stops_before_writing(tmp_path, monkeypatch):
    s2 = _raster(tmp_path / "s2.tif", "s2", 256, 256, _tf())
    out = tmp_path / "out"
    out.mkdir()
    _free(monkeypatch, 1000)
    with pytest.raises(ValueError, match="not enough free disk space.*another disk"):
        run_scene(SceneRequest(model=MODEL, optical=s2, mode="dense",
                               outputs={"probabilities": str(out / "p.tif"), "clusters": str(out / "c.tif")}))
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("mode", ["dense", "sliding"])
def test_the_estimate_covers_every_file_written(tmp_path, monkeypatch, mode):
    """The largest size each file reaches during the run is within its estimate."""
    s2 = _raster(tmp_path / "s2.tif", "s2", 300, 260, _tf())
    s1 = _raster(tmp_path / "s1.tif", "s1", 300, 260, _tf(), seed=1)
    out = tmp_path / "out"
    out.mkdir()
    estimated = {}

    def record(needs, what):
        for p, n in needs:
            estimated[os.path.basename(p)] = estimated.get(os.path.basename(p), 0) + n
    monkeypatch.setattr(plan, "check_free_space", record)
    seen: dict[str, int] = {}
    close = dense.GridStore.close

    def close_and_measure(self):
        if self.fd is not None:
            seen[os.path.basename(self.path)] = os.fstat(self.fd).st_size
        close(self)
    monkeypatch.setattr(dense.GridStore, "close", close_and_measure)
    outputs = {k: str(out / f"{k}.tif") for k in ("probabilities", "dominant", "multihot", "uncertainty",
                                                    "clusters")}
    run_scene(SceneRequest(model=MODEL, optical=s2, sar=s1, mode=mode, probability_dtype="float32",
                           clusters=3, outputs=outputs))
    for k, p in outputs.items():
        assert os.path.getsize(p) <= estimated[os.path.basename(p)], k
    if mode == "dense":  # the feature and presence stores, named after the first output
        tag = f".probabilities.tif.{os.getpid()}"
        assert set(seen) == {f"{tag}.s2.features", f"{tag}.s1.features", f"{tag}.present"}
        assert sum(seen.values()) <= estimated[tag]


def test_temporaries_of_a_stopped_run_are_deleted_and_a_running_ones_kept(tmp_path):
    """A killed run leaves its feature stores and staged copies (hidden, beside its first
    output); the next run beside the same output deletes them, and says so, but never those of
    a run still going (another process) or its own."""
    import subprocess
    import sys

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    alive = str(os.getppid())
    out = tmp_path / "out"
    out.mkdir()
    stale = [out / f".d.tif.{gone}.s2.staged.tif", out / f".d.tif.{gone}.s2.features"]
    for p in stale:
        p.write_bytes(b"x" * 3_000_000)
    kept = [out / f".d.tif.{alive}.s2.staged.tif", out / ".other.tif.123.s2.features", out / ".d.tif.notapid"]
    for p in kept:
        p.write_bytes(b"x")
    s2 = _raster(tmp_path / "s2.tif", "s2", 64, 64, _tf())
    res = run_scene(SceneRequest(model=MODEL, optical=s2, outputs={"dominant": str(out / "d.tif")}))
    assert not any(p.exists() for p in stale) and all(p.exists() for p in kept)
    assert any("deleted 2 temporary file(s) (6 MB)" in w for w in res.warnings)
