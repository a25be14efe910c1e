"""The engine's streaming machinery: in-place normalisation, prefetching, heap reuse.

These are speed measures (benchmarks/scene_benchmark.py); here we check they change nothing.
"""
from __future__ import annotations

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import rasterio
import torch

from core.data.normalize import normalize, normalize_
from core.engine import SceneRequest, block_reads, dense, engine_model, run_scene, sliding
from core.engine.heap import retained_heap

from .test_engine_edges import MODEL, _raster, _tf


def test_in_place_normalisation_matches_the_reference():
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 5000, (12, 40, 50)).astype(np.float32)
    a[3, 5, 7] = np.nan          # one band missing: the whole pixel is no-data
    a[:, 10:12, 20:30] = np.nan  # a hole
    a[0, 30, 30] = np.inf
    invalid = ~np.isfinite(a).all(0)
    ref = a.copy()
    ref[:, invalid] = np.nan
    expected = normalize(ref, "s2")
    got = normalize_(torch.from_numpy(a.copy()), "s2", torch.from_numpy(invalid))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6, atol=1e-6)
    assert (got.numpy()[:, invalid] == 0).all()


@pytest.mark.parametrize("edge", ["right", "bottom", "corner", "none"])
def test_in_place_normalisation_at_scene_edges(edge):
    """Invalid pixels only in a strip at the block's edge (outside the scene): they become 0 and
    nothing else changes (normalize_ fills only the rows and columns that hold them)."""
    a = np.random.default_rng(1).uniform(0, 5000, (3, 30, 20)).astype(np.float32)
    invalid = np.zeros((30, 20), bool)
    if edge in ("right", "corner"):
        invalid[:, -2:] = True
    if edge in ("bottom", "corner"):
        invalid[-1:] = True
    ref = a.copy()
    ref[:, invalid] = np.nan
    mean, std = [100.0, 200.0, 300.0], [10.0, 20.0, 30.0]
    got = normalize_(torch.from_numpy(a.copy()), "s1", torch.from_numpy(invalid), mean, std)
    np.testing.assert_array_equal(got.numpy(), normalize(ref, "s1", mean, std))


def test_prefetch_reads_one_block_ahead_in_order():
    reads, seen = [], []
    lock = threading.Lock()

    def read(b):
        with lock:
            reads.append(b)
        return b * 10

    with ThreadPoolExecutor(1) as pool:
        blocks = block_reads.Prefetcher(pool, range(6), read)
        for b, data in blocks:
            assert data == b * 10
            with lock:
                assert len(reads) == b + 1  # the next read waits for read_ahead()
            blocks.read_ahead()
            blocks.read_ahead()  # a second call reads nothing more
            seen.append(b)
            if blocks.pending[1] is not None:
                blocks.pending[1].result()  # let the read ahead finish
            with lock:
                assert len(reads) == min(b + 2, 6)  # never more than one block ahead
    assert seen == list(range(6)) and reads == list(range(6))


def test_prefetch_error_reaches_the_caller():
    def read(b):
        if b == 2:
            raise ValueError("bad block")
        return b

    with ThreadPoolExecutor(1) as pool:
        got = []
        try:
            blocks = block_reads.Prefetcher(pool, range(5), read)
            for b, _ in blocks:
                blocks.read_ahead()
                got.append(b)
        except ValueError as e:
            assert "bad block" in str(e)
        else:
            raise AssertionError("the read error was swallowed")
    assert got == [0, 1]


def _rss_mb() -> float:
    import os
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_release_freed_gives_memory_back_inside_the_retained_heap():
    """Between two encoders the heap keeps what the first freed, unless released (heap.py)."""
    from core.engine.heap import release_freed
    with retained_heap() as active:
        if not active:
            pytest.skip("no glibc heap control on this platform")
        x = torch.ones(64, 1024, 1024)  # 256 MB, from the heap (no mmap inside)
        del x
        kept = _rss_mb()
        release_freed()
        assert kept - _rss_mb() > 200, "the freed 256 MB stayed resident"


def test_heap_reuse_and_prefetch_change_no_output(tmp_path, monkeypatch):
    with retained_heap() as outer, retained_heap() as inner:
        assert outer == inner
        torch.zeros(64, 1024, 1024).sum()  # a 256 MB allocation inside
    s2 = _raster(tmp_path / "s2.tif", "s2", 300, 260, _tf(), seed=1)
    s1 = _raster(tmp_path / "s1.tif", "s1", 300, 260, _tf(), seed=2)

    def run(name, prefetch=True):
        run_scene(SceneRequest(model=MODEL, optical=s2, sar=s1, mode="dense", block_size=128,
                               probability_dtype="float32", prefetch=prefetch,
                               outputs={"probabilities": str(tmp_path / f"{name}.tif")}))
        with rasterio.open(tmp_path / f"{name}.tif") as ds:
            return ds.read()

    with_reuse = run("with")
    np.testing.assert_array_equal(with_reuse, run("sequential", prefetch=False))
    for stage in (dense, sliding):
        monkeypatch.setattr(stage, "retained_heap", lambda: contextlib.nullcontext(False))
    without = run("without")
    assert with_reuse.shape[0] == 19 and np.isfinite(with_reuse).any()
    np.testing.assert_array_equal(with_reuse, without)


def test_outputs_do_not_depend_on_the_stored_type(tmp_path, monkeypatch):
    """A uint16 optical raster (read in its stored type, converted strip by strip as its encoder
    runs: 64-row strips here, so each block is several) and the same values as float32 (read
    as float) give the same probabilities."""
    import functools

    from core.engine import model_cache
    from core.engine.strips import strip_encoder
    monkeypatch.setattr(engine_model, "strip_encoder", functools.partial(strip_encoder, strip_rows=64))
    model_cache.forget()  # a model kept from an earlier test was prepared with 512-row strips
    monkeypatch.setattr(model_cache, "_kept", None)  # and the 64-row one is not kept for later tests
    asked = []
    rows = block_reads.StoredRows.rows
    monkeypatch.setattr(block_reads.StoredRows, "rows", lambda self, a, b: asked.append(b - a) or rows(self, a, b))
    s2 = _raster(tmp_path / "s2.tif", "s2", 300, 260, _tf(), nodata=0,
                 fill=lambda a: a.__setitem__((slice(None), slice(0, 40), slice(0, 70)), 0))
    with rasterio.open(s2) as src:
        prof, data, desc = src.profile, src.read(), src.descriptions
    prof.update(dtype="float32")
    f32 = str(tmp_path / "s2f.tif")
    with rasterio.open(f32, "w", **prof) as dst:
        dst.write(data.astype("float32"))
        for i, d in enumerate(desc, 1):
            dst.set_band_description(i, d)
    outs = {}
    for name, path in (("u16", s2), ("f32", f32)):
        o = tmp_path / name
        o.mkdir()
        run_scene(SceneRequest(model=MODEL, optical=path, mode="dense", block_size=128, window_valid_min=0.0,
                               outputs={"probabilities": str(o / "p.tif")}, probability_dtype="float32"))
        with rasterio.open(o / "p.tif") as ds:
            outs[name] = ds.read()
    assert asked and max(asked) < 128  # strips, never a whole 256-row read window
    np.testing.assert_array_equal(np.isnan(outs["u16"]), np.isnan(outs["f32"]))
    np.testing.assert_allclose(np.nan_to_num(outs["u16"]), np.nan_to_num(outs["f32"]), atol=1e-5)
    assert np.isnan(outs["u16"][:, 0, 0]).all() and np.isfinite(outs["u16"][:, -1, -1]).all()


def test_read_ahead_buffers_come_from_the_calling_thread():
    """The next block's buffers are allocated by the thread that calls read_ahead (the engine's
    main thread, where the block just freed its input), and filled by the reading thread."""
    main = threading.current_thread()
    allocs, fills = [], []

    def alloc(b):
        allocs.append((b, threading.current_thread()))
        return [b * 100]

    def read(b, bufs=None):
        fills.append((b, bufs, threading.current_thread()))
        return b

    with ThreadPoolExecutor(1) as pool:
        blocks = block_reads.Prefetcher(pool, range(3), read, alloc)
        assert [b for b, _ in blocks if blocks.read_ahead() is None] == [0, 1, 2]
    assert allocs == [(1, main), (2, main)]
    assert fills[0] == (0, None, main)  # the first block: nothing to overlap, read at once
    assert [(b, bufs) for b, bufs, _ in fills[1:]] == [(1, [100]), (2, [200])]
    assert all(t is not main for _, _, t in fills[1:])


@pytest.mark.parametrize("mode", ["dense", "sliding"])
def test_compressed_tiled_inputs_keep_shared_columns_and_change_no_output(tmp_path, monkeypatch, mode):
    """Deflate inputs in 32 px tiles, read by blocks whose halos reach into their neighbours'
    tiles: each read keeps the decoded columns the next block along the row shares
    (band_reader.BandReader), and the outputs equal those of the same rasters uncompressed."""
    from rasterio.shutil import copy as copy_raster

    from core.engine.band_reader import BandReader

    plain = {m: _raster(tmp_path / f"{m}.tif", m, 300, 260, _tf(), seed=k) for k, m in ((1, "s2"), (2, "s1"))}
    packed = {}
    for m, p in plain.items():
        packed[m] = str(tmp_path / f"{m}_deflate.tif")
        copy_raster(p, packed[m], driver="GTiff", compress="deflate", tiled=True, blockxsize=32, blockysize=32)
    kept = []
    plan = BandReader._keep_plan
    monkeypatch.setattr(BandReader, "_keep_plan", lambda self, *a: kept.append(plan(self, *a)) or kept[-1])

    def run(inputs, name):
        run_scene(SceneRequest(model=MODEL, optical=inputs["s2"], sar=inputs["s1"], mode=mode, block_size=128,
                               stride=32 if mode == "sliding" else None, probability_dtype="float32",
                               outputs={"probabilities": str(tmp_path / f"{name}.tif")}))
        with rasterio.open(tmp_path / f"{name}.tif") as ds:
            return ds.read()

    ref = run(plain, "plain")
    assert not any(kept)  # uncompressed files are copied, not decoded: nothing to keep
    got = run(packed, "packed")
    assert sum(k is not None for k in kept) >= 4  # both inputs, blocks of each row but the last
    np.testing.assert_array_equal(got, ref)
