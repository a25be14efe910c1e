"""Scene engine edge cases on small synthetic rasters, band mapping, units, geometry, CLI."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import Affine

from core.data.bands import S1_MEAN, S1_STD, S2_BANDS, S2_MEAN, S2_STD
from core.engine import Cancelled, SceneRequest, describe_inputs, run_scene
from core.engine import windows as W
from core.engine.band_mapping import canonical_band, expand_bands

ROOT = Path(__file__).resolve().parents[2]
MODEL = str(ROOT / "resources" / "models" / "mosaic-small-ben19")
UTM = "EPSG:32633"


def _raster(path: Path, kind: str, w: int, h: int, transform: Affine, crs: str = UTM, seed: int = 0,
            descriptions=None, nodata=None, fill=None, linear=False) -> str:
    rng = np.random.default_rng(seed)
    if kind == "s2":
        a = (np.array(S2_MEAN)[:, None, None] + np.array(S2_STD)[:, None, None] * 0.3 *
             rng.standard_normal((12, h, w))).clip(1, None).astype("uint16")
        descriptions = descriptions or list(S2_BANDS)
    else:
        a = (np.array(S1_MEAN)[:, None, None] + np.array(S1_STD)[:, None, None] * 0.3 *
             rng.standard_normal((2, h, w))).astype("float32")
        if linear:
            a = (10 ** (a / 10)).astype("float32")
        descriptions = descriptions or ["VV", "VH"]
    if fill is not None:
        fill(a)
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=a.shape[0], dtype=a.dtype, crs=crs,
                       transform=transform, nodata=nodata) as ds:
        ds.write(a)
        for i, d in enumerate(descriptions, 1):
            ds.set_band_description(i, d)
    return str(path)


def _tf(x0=500000.0, y0=4000000.0, res=10.0):
    return Affine(res, 0, x0, 0, -res, y0)


# ----------------------------------------------------------------------------- geometry

def test_pool_weights_sample_the_patch_cell_centres():
    # aligned (a map read from pixel -132: window origin of cell 0 is -52, 80 px = 5 cells in):
    # each window averages exactly 8 map cells, like the model averages the 8 x 8 cells of a patch
    w = W.pool_weights(4, 0, 16, -132, 120, 16, 40, 8)
    assert np.allclose(w.sum(1), 1.0)
    for i in range(4):
        assert np.flatnonzero(w[i]).tolist() == list(range(5 + i, 13 + i)) and np.allclose(w[i][w[i] > 0], 1 / 8)
    # not aligned (read from -128: origin 76 px = 4.75 cells into the map): linear interpolation, same total
    w = W.pool_weights(4, 0, 16, -128, 120, 16, 40, 8)
    assert np.allclose(w.sum(1), 1.0)
    nz = w[0][w[0] > 0]
    assert len(nz) == 9 and np.isclose(nz[0], 0.25 / 8) and np.isclose(nz[1], 1 / 8) and np.isclose(nz[-1], 0.75 / 8)
    with pytest.raises(ValueError, match="does not cover"):
        W.pool_weights(2, 0, 16, 0, 120, 16, 40, 8)
    assert W.default_halo(120, 16) == 128
    assert W.halo_overhead(2048, 128) == pytest.approx(0.2656, abs=1e-3)


def test_band_names():
    assert [canonical_band(s) for s in ("B2", "b02", "B2 (blue)", "s2_B8A", "B8a", "VV", "vh_db", "Band 1")] == \
        ["B02", "B02", "B02", "B8A", "B8A", "VV", "VH", None]
    assert expand_bands("S2-13")[10] == "-"
    with pytest.raises(ValueError, match="B13"):
        expand_bands(["B13"])


# ----------------------------------------------------------------------------- mapping and units

def test_missing_and_extra_bands_are_named(tmp_path):
    s2 = _raster(tmp_path / "s2.tif", "s2", 40, 40, _tf())
    out = {"dominant": str(tmp_path / "d.tif")}
    with pytest.raises(ValueError, match="lacks band.*B8A"):
        bands = list(S2_BANDS)
        bands[8] = "-"
        run_scene(SceneRequest(model=MODEL, optical=s2, optical_bands=bands, outputs=out))
    desc = list(S2_BANDS)
    desc[0] = "coastal"
    bad = _raster(tmp_path / "bad.tif", "s2", 40, 40, _tf(), descriptions=desc)
    with pytest.raises(ValueError, match=r"band\(s\) \[1\] have no recognisable name"):
        run_scene(SceneRequest(model=MODEL, optical=bad, outputs=out))
    res = run_scene(SceneRequest(model=MODEL, optical=bad, optical_bands=list(S2_BANDS), outputs=out))
    assert Path(res.outputs["dominant"]).exists()
    with pytest.raises(ValueError, match="has 12 band.*names 2"):
        run_scene(SceneRequest(model=MODEL, optical=s2, optical_bands=["B02", "B03"], outputs=out))
    with pytest.raises(FileNotFoundError):
        run_scene(SceneRequest(model=MODEL, optical=str(tmp_path / "none.tif"), outputs=out))
    with pytest.raises(ValueError, match="unknown output"):
        run_scene(SceneRequest(model=MODEL, optical=s2, outputs={"nope": str(tmp_path / "n.tif")}))


def test_linear_sar_is_converted_to_db(tmp_path):
    db = _raster(tmp_path / "db.tif", "s1", 64, 64, _tf(), seed=3)
    lin = _raster(tmp_path / "lin.tif", "s1", 64, 64, _tf(), seed=3, linear=True)
    # window_valid_min=0: every cell of this 640 m scene answers (windows past the edge: test_window_rule)
    r1 = run_scene(SceneRequest(model=MODEL, sar=db, stride=32, probability_dtype="float32", window_valid_min=0.0,
                                outputs={"probabilities": str(tmp_path / "a.tif")}))
    r2 = run_scene(SceneRequest(model=MODEL, sar=lin, stride=32, probability_dtype="float32", window_valid_min=0.0,
                                outputs={"probabilities": str(tmp_path / "b.tif")}))
    assert any("linear power" in w for w in r2.warnings) and not any("linear" in w for w in r1.warnings)
    with rasterio.open(r1.outputs["probabilities"]) as a, rasterio.open(r2.outputs["probabilities"]) as b:
        assert np.allclose(a.read(), b.read(), atol=1e-4)
    assert describe_inputs(None, lin, MODEL)["sar"]["units"] == "linear"


@pytest.mark.parametrize("overviews", [False, True])
def test_sar_units_are_told_from_a_sample(tmp_path, overviews):
    """dB and linear power are told apart from 64 windows (or an overview), the same answer
    as all the pixels give, and nothing the check decoded stays in GDAL's block cache."""
    gdal = pytest.importorskip("osgeo.gdal")
    from core.engine.align import sar_is_linear
    for linear in (False, True):
        p = _raster(tmp_path / f"s1_{linear}_{overviews}.tif", "s1", 900, 700, _tf(), seed=4, linear=linear)
        if overviews:
            with rasterio.open(p, "r+") as ds:
                ds.build_overviews([2, 4])
        before = gdal.GetCacheUsed()
        with rasterio.open(p) as src:
            assert sar_is_linear(src, [1, 2]) is linear
            assert gdal.GetCacheUsed() - before < 2**20


# ----------------------------------------------------------------------------- grids

def test_shifted_and_rotated_sar_partial_overlap(tmp_path):
    s2 = _raster(tmp_path / "s2.tif", "s2", 96, 80, _tf())
    # SAR shifted by half a pixel and 300 m east: overlap = 660 m x 800 m
    s1 = _raster(tmp_path / "s1.tif", "s1", 96, 80, _tf(500305.0))
    res = run_scene(SceneRequest(model=MODEL, optical=s2, sar=s1, stride=16, window_valid_min=0.0,
                                 outputs={"dominant": str(tmp_path / "d.tif")}))
    with rasterio.open(res.outputs["dominant"]) as ds:
        assert ds.transform.c == pytest.approx(500300.0)  # snapped to the optical grid inside the overlap
        assert ds.bounds.right >= 500960.0 - 1e-6 and ds.width == 5
        assert (ds.read(1) != 255).all()
    # rotated SAR grid (10 degrees): warped onto the optical grid
    rot = Affine.translation(500000.0, 4000000.0) * Affine.rotation(10) * Affine.scale(10, -10)
    s1r = _raster(tmp_path / "s1r.tif", "s1", 96, 80, rot)
    res = run_scene(SceneRequest(model=MODEL, optical=s2, sar=s1r, stride=16,
                                 outputs={"dominant": str(tmp_path / "r.tif")}))
    assert res.width >= 3 and res.height >= 3
    # rotated optical: a north-up 10 m grid in its CRS
    s2r = _raster(tmp_path / "s2r.tif", "s2", 64, 64, rot)
    res = run_scene(SceneRequest(model=MODEL, optical=s2r, stride=16, window_valid_min=0.0,
                                 outputs={"dominant": str(tmp_path / "o.tif")}))
    with rasterio.open(res.outputs["dominant"]) as ds:
        d = ds.read(1)
        assert ds.transform.b == 0 and (d == 255).any() and (d != 255).any()  # corners outside = no data


def test_no_overlap_is_a_clear_error(tmp_path):
    s2 = _raster(tmp_path / "s2.tif", "s2", 40, 40, _tf())
    s1 = _raster(tmp_path / "s1.tif", "s1", 40, 40, _tf(600000.0))
    with pytest.raises(ValueError, match="do not overlap"):
        run_scene(SceneRequest(model=MODEL, optical=s2, sar=s1, outputs={"dominant": str(tmp_path / "d.tif")}))
    assert not list(tmp_path.glob("d.tif*")) and not list(tmp_path.glob(".d.tif*"))
    with pytest.raises(ValueError, match="extent"):
        run_scene(SceneRequest(model=MODEL, optical=s2, extent=(0, 0, 1, 1),
                               outputs={"dominant": str(tmp_path / "d.tif")}))


def test_all_nodata_blocks_and_nan(tmp_path):
    def fill(a):
        a[:, :, :256] = 0  # left half no data (S2 no-data 0)
    s2 = _raster(tmp_path / "s2.tif", "s2", 512, 64, _tf(), nodata=0, fill=fill)

    def nan(a):
        a[:, :, :320] = np.nan
    s1 = _raster(tmp_path / "s1.tif", "s1", 512, 64, _tf(), fill=nan)
    res = run_scene(SceneRequest(model=MODEL, optical=s2, sar=s1, stride=16, block_size=128, window_valid_min=0.0,
                                 outputs={"dominant": str(tmp_path / "d.tif"), "embeddings": str(tmp_path / "e.tif")}))
    assert res.blocks == 4
    with rasterio.open(res.outputs["dominant"]) as ds:
        d = ds.read(1)
    assert (d[:, :16] == 255).all() and (d[:, 16:] != 255).all()
    with rasterio.open(res.outputs["embeddings"]) as ds:
        e = ds.read()
    assert np.isnan(e[:, :, :16]).all()
    assert np.allclose(e[128:, :, 16:20], 0)   # S1 absent in cells 16-19: its half of the embedding is 0
    assert np.allclose(np.linalg.norm(e[128:, :, 20:], axis=0), 1, atol=1e-4)
    # a scene without any valid pixel gives an all-no-data raster, and clusters say why they cannot run
    empty = _raster(tmp_path / "empty.tif", "s2", 32, 32, _tf(), nodata=0, fill=lambda a: a.fill(0))
    res = run_scene(SceneRequest(model=MODEL, optical=empty, outputs={"dominant": str(tmp_path / "z.tif")}))
    with rasterio.open(res.outputs["dominant"]) as ds:
        assert (ds.read(1) == 255).all()
    with pytest.raises(ValueError, match="too few"):
        run_scene(SceneRequest(model=MODEL, optical=empty, outputs={"clusters": str(tmp_path / "c.tif")}))
    assert not list(tmp_path.glob("c.tif")) and not list(tmp_path.glob(".c.tif*"))


def test_one_pixel_wide_scene(tmp_path):
    s2 = _raster(tmp_path / "s2.tif", "s2", 1, 50, _tf())
    res = run_scene(SceneRequest(model=MODEL, optical=s2, mode="dense", window_valid_min=0.0,
                                 outputs={"probabilities": str(tmp_path / "p.tif"), "dominant": str(tmp_path / "d.tif")}))
    assert (res.width, res.height) == (1, 4)
    with rasterio.open(res.outputs["dominant"]) as ds:
        assert (ds.read(1) != 255).all()
    res = run_scene(SceneRequest(model=MODEL, optical=s2, mode="sliding", stride=16,
                                 outputs={"dominant": str(tmp_path / "s.tif")}))
    assert res.mode == "sliding" and (res.width, res.height) == (1, 4)


def test_rewriting_an_output_drops_its_stale_statistics(tmp_path):
    s2 = _raster(tmp_path / "s2.tif", "s2", 64, 64, _tf())
    out = tmp_path / "d.tif"
    stale = tmp_path / "d.tif.aux.xml"  # what QGIS leaves beside a raster it has shown
    out.write_bytes(b"old")
    stale.write_text("<PAMDataset><Metadata><MDI key='STATISTICS_MAXIMUM'>3</MDI></Metadata></PAMDataset>")
    run_scene(SceneRequest(model=MODEL, optical=s2, mode="dense", outputs={"dominant": str(out)}))
    assert not stale.exists()
    with rasterio.open(out) as ds:
        assert ds.count == 1


def test_cancel_leaves_nothing(tmp_path):
    s2 = _raster(tmp_path / "s2.tif", "s2", 256, 256, _tf())
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) > 2

    seen = []
    with pytest.raises(Cancelled):
        run_scene(SceneRequest(model=MODEL, optical=s2, block_size=128,
                               outputs={"dominant": str(tmp_path / "d.tif"), "clusters": str(tmp_path / "c.tif")}),
                  progress=seen.append, is_cancelled=cancel)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s2.tif"]
    assert seen and seen == sorted(seen) and max(seen) < 1


def test_sliding_matches_model_forward(tmp_path):
    """Sliding-window mode = the model's own patch classifier (BatchNorm folded, same numbers)."""
    import torch

    from core.data.normalize import normalize
    from core.io.model_file import load_model

    s2 = _raster(tmp_path / "s2.tif", "s2", 120, 120, _tf(), seed=5)
    res = run_scene(SceneRequest(model=MODEL, optical=s2, mode="sliding", stride=120, probability_dtype="float32",
                                 outputs={"probabilities": str(tmp_path / "p.tif")}))
    with rasterio.open(res.outputs["probabilities"]) as ds:
        p = ds.read()[:, 0, 0]
    with rasterio.open(s2) as ds:
        x = normalize(ds.read().astype("float32"), "s2")
    model, _ = load_model(MODEL)
    with torch.no_grad():
        ref = torch.sigmoid(model(s2=torch.from_numpy(x)[None])["logits"])[0].numpy()
    assert np.allclose(p, ref, atol=1e-4)


# ----------------------------------------------------------------------------- CLI

def test_cli(tmp_path, capsys):
    from core.engine.cli import add_commands

    p = argparse.ArgumentParser(prog="python -m core")
    sub = p.add_subparsers(dest="command", required=True)
    add_commands(sub)
    with pytest.raises(SystemExit):
        p.parse_args(["classify", "--help"])
    text = capsys.readouterr().out
    for opt in ("--optical", "--sar", "--optical-bands", "--sar-units", "--mode", "--stride", "--device",
                "--batch-size", "--threads", "--probabilities", "--dominant", "--multihot", "--uncertainty",
                "--block-size", "--extent"):
        assert opt in text
    s2 = _raster(tmp_path / "s2.tif", "s2", 64, 64, _tf())
    a = p.parse_args(["embed", "--optical", s2, "--clusters", str(tmp_path / "c.tif"), "--k", "3", "--quiet",
                      "--window-valid-min", "0"])
    assert a.func(a) == 0
    with rasterio.open(tmp_path / "c.tif") as ds:
        assert set(np.unique(ds.read(1))) <= {0, 1, 2}


def test_categorical_outputs_list_the_values_they_hold(tmp_path):
    """dominant, multihot and clusters carry a ``values`` tag (writer.py): exactly the values
    present, no data left out, so a legend needs no scan of the raster."""
    s2 = _raster(tmp_path / "s2.tif", "s2", 300, 260, _tf(), seed=5)
    s1 = _raster(tmp_path / "s1.tif", "s1", 300, 260, _tf(), seed=6)
    outs = {k: str(tmp_path / f"{k}.tif") for k in ("dominant", "multihot", "clusters", "uncertainty")}
    run_scene(SceneRequest(model=MODEL, optical=s2, sar=s1, stride=16, clusters=4, block_size=128, outputs=outs))
    for kind in ("dominant", "multihot", "clusters"):
        with rasterio.open(outs[kind]) as ds:
            a = ds.read(1)
            present = np.unique(a[a != ds.nodata]).tolist()
            assert present and ds.tags()["values"] == ",".join(map(str, present)), kind
    with rasterio.open(outs["uncertainty"]) as ds:
        assert "values" not in ds.tags()


def test_values_are_not_listed_when_there_are_too_many(tmp_path):
    from core.engine.writer import MAX_LISTED_VALUES, OutputRaster
    o = OutputRaster(str(tmp_path / "m.tif"), "multihot", crs="EPSG:32633", transform=_tf(), width=40, height=40,
                     count=1, dtype="uint32", nodata=4294967295, categorical=True)
    o.write(np.arange(1600, dtype="uint32").reshape(1, 40, 40), 0, 0)
    assert MAX_LISTED_VALUES < 1600
    o.finish()
    path = o.commit()
    with rasterio.open(path) as ds:
        assert "values" not in ds.tags()
