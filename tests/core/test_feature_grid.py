"""Dense mode's shared feature grid: geometry, the temporary store, and what it does to outputs."""
from __future__ import annotations

import numpy as np
import pytest
import rasterio

from core.engine import SceneRequest, run_scene
from core.engine import windows as W
from core.engine.feature_grid import FeatureAxis
from core.engine.grid_store import GridStore

from .test_engine_edges import MODEL, _raster, _tf


@pytest.mark.parametrize("n_out,stride,block", [(40, 16, 8), (37, 16, 10), (23, 30, 7), (5, 48, 2), (1, 16, 4)])
def test_blocks_own_every_needed_feature_cell_once(n_out, stride, block):
    ax = FeatureAxis(n_out, stride, 120, 16, 8)
    lo, hi = ax.cells
    owned = [ax.owned(i, min(n_out, i + block)) for i in range(0, n_out, block)]
    assert owned[0][0] == lo and owned[-1][1] == hi
    assert all(a[1] == b[0] for a, b in zip(owned, owned[1:]))  # a partition, in order
    for i in range(n_out):  # every window's cells are in the scene's range
        a, b = ax.needed(i, i + 1)
        assert lo <= a and b <= hi
    a, b = owned[0]
    r0, n = ax.read_window(a, b, 64)
    assert n == 16 * (b - a) + 128 and (r0 + 64 - ax.phase) % 16 == 0  # cell a is map cell 4


def test_windows_sample_feature_cells_exactly_when_the_stride_allows():
    ax = FeatureAxis(10, 16, 120, 16, 8)
    assert ax.phase == 12  # window origin of cell 0 is -52 = 16 * -4 + 12
    a, b = ax.needed(3, 7)
    w = W.pool_weights(4, 3, 16, 16 * a + ax.phase, 120, 16, b - a, 8)
    assert np.allclose(w[w > 0], 1 / 8) and ((w > 0).sum(1) == 8).all()
    ax30 = FeatureAxis(10, 30, 120, 16, 8)  # 30 px: windows fall between centres, interpolated
    a, b = ax30.needed(0, 10)
    w = W.pool_weights(10, 0, 30, 16 * a + ax30.phase, 120, 16, b - a, 8)
    assert np.allclose(w.sum(1), 1.0) and ((w > 0).sum(1) > 8).any()


def test_grid_store_round_trip_and_cleanup(tmp_path):
    p = tmp_path / "f.bin"
    st = GridStore(str(p), 6, 7, 3)
    a = np.arange(2 * 4 * 3, dtype=np.float32).reshape(2, 4, 3)
    st.write(1, 2, a)
    np.testing.assert_array_equal(st.read(1, 2, 2, 4), a)
    got = st.read(0, 0, 6, 7)
    assert (got[1:3, 2:6] == a).all() and got.sum() == a.sum()  # unwritten cells read as 0
    with pytest.raises(IndexError):
        st.read(5, 5, 2, 2)
    with pytest.raises(ValueError, match="depth"):
        st.write(0, 0, np.zeros((1, 1, 2), np.float32))
    st.close()
    st.close()
    assert not p.exists()


@pytest.mark.parametrize("stride", [16, 30])  # 30 px: windows between cell centres, interpolated
def test_dense_outputs_hardly_depend_on_the_block_size(tmp_path, stride):
    """Every feature cell is computed once, with 64 px of context, whatever block computes it:
    many small blocks give nearly the map of one block, and leave no temporary file behind."""
    s2 = _raster(tmp_path / "s2.tif", "s2", 400, 352, _tf())
    s1 = _raster(tmp_path / "s1.tif", "s1", 400, 352, _tf(), seed=1)
    probs = {}
    for block in (128, 160, 2048):
        d = tmp_path / f"b{block}"
        d.mkdir()
        # window_valid_min=0: the edge cells too (their windows reach past this 4 km scene)
        r = run_scene(SceneRequest(model=MODEL, optical=s2, sar=s1, mode="dense", block_size=block, stride=stride,
                                   probability_dtype="float32", window_valid_min=0.0,
                                   outputs={"probabilities": str(d / "p.tif")}))
        assert sorted(p.name for p in d.iterdir()) == ["p.tif"] or \
            sorted(p.name for p in d.iterdir()) == ["p.tif", "p.tif.aux.xml"]
        with rasterio.open(d / "p.tif") as ds:
            probs[block] = ds.read()
    assert r.blocks == 1
    for block in (128, 160):
        diff = np.abs(probs[block] - probs[2048])
        assert np.isfinite(diff).all()
        assert diff.mean() < 1e-4 and diff.max() < 2e-3, (block, diff.mean(), diff.max())  # measured: < 1e-5
