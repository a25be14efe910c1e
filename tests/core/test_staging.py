"""Decoding JPEG 2000 inputs once before a run (core/engine/staging.py): the outputs are those
of reading the input as it is, the temporary copy never outlives the run, and a short disk or a
cancel is handled."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import Affine
from rasterio.windows import Window

from core.data.bands import S2_BANDS
from core.engine import Cancelled, SceneRequest, run_scene, scene_inputs, staging
from core.engine.align import Grid, build_band_vrt
from core.engine.staging import mask_kind, slow_to_decode, source_window, stage, staged_bytes, why_not_exact

from .test_engine_edges import MODEL, _raster, _tf
from .test_engine_scenes import USA

USA_BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "-", "B11", "B12", "B8A"]


def _jp2(tif: str, out: Path) -> str:
    """A lossless JPEG 2000 copy of ``tif``, in 64 px tiles."""
    from osgeo import gdal

    ds = gdal.Translate(str(out), tif, format="JP2OpenJPEG",
                        creationOptions=["REVERSIBLE=YES", "QUALITY=100", "BLOCKXSIZE=64", "BLOCKYSIZE=64"])
    assert ds is not None
    ds = None
    return str(out)


def _masked(path: Path, a: np.ndarray, tile: int, hole: tuple[slice, slice]) -> tuple[Path, np.ndarray]:
    """A pixel-interleaved tiled uint16 GeoTIFF of ``a`` with an internal mask that hides
    ``hole``; returns it and the mask."""
    with rasterio.open(path, "w", driver="GTiff", width=a.shape[2], height=a.shape[1], count=a.shape[0],
                       dtype="uint16", crs="EPSG:32633", transform=_tf(), tiled=True, blockxsize=tile,
                       blockysize=tile, interleave="pixel") as ds:
        ds.write(a)
        mask = np.full(a.shape[1:], 255, np.uint8)
        mask[hole] = 0
        ds.write_mask(mask)
    return path, mask


def _read_all(res) -> dict[str, np.ndarray]:
    out = {}
    for kind, path in res.outputs.items():
        with rasterio.open(path) as ds:
            out[kind] = ds.read()
    return out


def _hidden(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


def _slow(path: str) -> str | None:
    with rasterio.open(path) as src:
        return slow_to_decode(src)


def test_jpeg2000_inputs_are_told_apart(tmp_path):
    assert _slow(USA[1]) == "JPEG 2000"
    assert _slow(build_band_vrt(USA, str(tmp_path / "usa.vrt"))) == "JPEG 2000 band files"
    tif = _raster(tmp_path / "s2.tif", "s2", 32, 32, _tf())
    assert _slow(tif) is None
    assert _slow(build_band_vrt([tif], str(tmp_path / "tif.vrt"))) is None


def _band_files(folder: Path, tile: int, compress: str | None = "deflate", size: int = 1100) -> list[str]:
    """Twelve single-band uint16 GeoTIFFs at 10 m in ``tile`` px tiles, named by band."""
    rng = np.random.default_rng(5)
    out = []
    for b in S2_BANDS:
        p = folder / f"s2_{tile}_{compress}_{b}.tif"
        with rasterio.open(p, "w", driver="GTiff", width=size, height=size, count=1, dtype="uint16", crs="EPSG:32633",
                           transform=Affine(10, 0, 500000, 0, -10, 4000000), nodata=0, tiled=True, blockxsize=tile,
                           blockysize=tile, **({"compress": compress, "predictor": 2} if compress else {})) as ds:
            ds.write(rng.integers(200, 3000, (1, size, size)).astype("uint16"))
        out.append(str(p))
    return out


def test_band_files_in_large_compressed_tiles_are_decoded_once(tmp_path):
    """A VRT of band files compressed in 1024 px tiles (Sentinel-2 COGs) is staged with auto
    (1.4x faster, benchmarks/jp2_staging.py --tile 1024), with the same outputs; in 512 px tiles,
    uncompressed, or as one multi-band file, it is read as it is."""
    big = build_band_vrt(_band_files(tmp_path, 1024), str(tmp_path / "big.vrt"))
    assert _slow(big) == "compressed band files in 1024 px tiles"
    assert _slow(build_band_vrt(_band_files(tmp_path, 512), str(tmp_path / "small.vrt"))) is None
    assert _slow(build_band_vrt(_band_files(tmp_path, 1024, None), str(tmp_path / "raw.vrt"))) is None
    one = tmp_path / "stack.tif"
    with rasterio.open(big) as src:
        prof = dict(src.profile, driver="GTiff", tiled=True, blockxsize=1024, blockysize=1024, compress="deflate")
        with rasterio.open(one, "w", **prof) as dst:
            dst.write(src.read())
    assert _slow(str(one)) is None
    got = {}
    for mode in ("auto", "never"):
        r = run_scene(SceneRequest(model=MODEL, optical=big, stage=mode, probability_dtype="float32",
                                   outputs={"probabilities": str(tmp_path / f"p_{mode}.tif")}))
        assert r.staged == ({"optical": "compressed band files in 1024 px tiles"} if mode == "auto" else {})
        with rasterio.open(tmp_path / f"p_{mode}.tif") as ds:
            got[mode] = ds.read()
    np.testing.assert_array_equal(got["auto"], got["never"])
    assert _hidden(tmp_path) == []


def test_real_jp2_bands_staged_give_the_same_outputs(tmp_path, monkeypatch):
    """USA L1C: 13 JPEG 2000 band files at 10/20/60 m in a VRT, decoded once (band by band, in
    strips of 40 rows, so bilinear resampling crosses strip edges) or block by block."""
    monkeypatch.setattr(staging, "STRIP_ROWS", 40)
    vrt = build_band_vrt(USA, str(tmp_path / "usa.vrt"))
    runs = {}
    for mode in ("auto", "never"):
        out = tmp_path / mode
        out.mkdir()
        runs[mode] = run_scene(SceneRequest(
            model=MODEL, optical=vrt, optical_bands=USA_BANDS, stage=mode, stride=16, block_size=128,
            probability_dtype="float32", window_valid_min=0.0,
            outputs={k: str(out / f"{k}.tif") for k in ("probabilities", "dominant")}))
        assert _hidden(out) == []  # the staged copy and the feature stores are gone
    assert runs["auto"].staged == {"optical": "JPEG 2000 band files"} and runs["never"].staged == {}
    a, b = _read_all(runs["auto"]), _read_all(runs["never"])
    assert np.isfinite(a["probabilities"]).all()
    for kind in a:
        np.testing.assert_array_equal(a[kind], b[kind])


def test_warped_jp2_is_staged_whole_and_reads_the_same(tmp_path, monkeypatch):
    """A geographic JPEG 2000 input warped onto a UTM grid whose corners reach past it: staged
    whole (GDAL's warper sizes its kernel from the source window, so a crop changed values near
    the edges), the outputs are those of reading it as it is. A south-up input too."""
    tf = Affine(0.0001, 0, 15.0, 0, -0.0001, 45.2)  # ~8 x 11 m pixels
    tif = _raster(tmp_path / "geo.tif", "s2", 240, 200, tf, crs="EPSG:4326", seed=3)
    jp2 = _jp2(tif, tmp_path / "geo.jp2")
    south = _raster(tmp_path / "south.tif", "s2", 64, 64, Affine(10, 0, 500000, 0, 10, 4999000), seed=1)
    windows = []
    real_stage = scene_inputs.stage
    monkeypatch.setattr(scene_inputs, "stage",
                        lambda p, idx, win, *a, **k: windows.append(win) or real_stage(p, idx, win, *a, **k))
    for path, mode, extent, size in ((jp2, "auto", (15.004, 45.17, 15.03, 45.196), (240, 200)),
                                     (south, "always", None, (64, 64))):
        runs = {}
        for m in (mode, "never"):
            out = tmp_path / f"{Path(path).stem}_{m}"
            out.mkdir()
            runs[m] = run_scene(SceneRequest(
                model=MODEL, optical=path, optical_bands=list(S2_BANDS), stage=m, stride=16, extent=extent,
                extent_crs="EPSG:4326" if extent else None, probability_dtype="float32", window_valid_min=0.0,
                outputs={"probabilities": str(out / "p.tif")}))
            assert _hidden(out) == []
        assert runs[mode].staged == {"optical": "JPEG 2000" if mode == "auto" else "asked for"}
        assert (windows[-1].col_off, windows[-1].row_off, windows[-1].width, windows[-1].height) == (0, 0, *size)
        a, b = _read_all(runs[mode])["probabilities"], _read_all(runs["never"])["probabilities"]
        assert np.isfinite(a).any()
        np.testing.assert_array_equal(a, b)


def test_inputs_a_copy_would_not_read_the_same_are_read_as_they_are(tmp_path):
    """Bands with different no-data values or types, or an alpha band: a GeoTIFF copy has one
    type and one no-data value for all bands, and a warp weighs partial alpha."""
    from osgeo import gdal

    a = _raster(tmp_path / "a.tif", "s2", 48, 48, _tf(), nodata=0)
    singles = []
    for i in range(12):  # twelve band files, the last six with another no-data value
        with rasterio.open(a) as src:
            band = src.read(i + 1)
        p = tmp_path / f"band{i}.tif"
        with rasterio.open(p, "w", driver="GTiff", width=48, height=48, count=1, dtype="uint16", crs="EPSG:32633",
                           transform=_tf(), nodata=0 if i < 6 else 1) as ds:
            ds.write(band, 1)
        singles.append(str(p))
    vrt = gdal.BuildVRT(str(tmp_path / "nd.vrt"), singles, separate=True)
    vrt = None
    with rasterio.open(tmp_path / "nd.vrt") as src:
        assert why_not_exact(src, list(range(1, 7)), True) is None
        assert why_not_exact(src, list(range(1, 13)), True) == "bands with different no-data values"
    # the engine reads it as it is, and says why where the copy was asked for
    res = run_scene(SceneRequest(model=MODEL, optical=str(tmp_path / "nd.vrt"), stage="always", stride=16,
                                 optical_bands=list(S2_BANDS), outputs={"dominant": str(tmp_path / "d.tif")}))
    assert res.staged == {} and any("different no-data values" in w for w in res.warnings)
    f32 = tmp_path / "f32.tif"
    with rasterio.open(f32, "w", driver="GTiff", width=48, height=48, count=1, dtype="float32", crs="EPSG:32633",
                       transform=_tf()) as ds:
        ds.write(np.full((1, 48, 48), -12.75, "float32"))
    # a VRT whose bands keep their own types (gdalbuildvrt -separate gives them one type from GDAL 3.8 on)
    gt = ", ".join(str(v) for v in _tf().to_gdal())
    bands = "".join(f'<VRTRasterBand dataType="{t}" band="{k}"><SimpleSource><SourceFilename relativeToVRT="0">{f}'
                    f'</SourceFilename><SourceBand>1</SourceBand></SimpleSource></VRTRasterBand>'
                    for k, (t, f) in enumerate((("UInt16", a), ("Float32", f32)), 1))
    (tmp_path / "types.vrt").write_text(f'<VRTDataset rasterXSize="48" rasterYSize="48"><SRS>EPSG:32633</SRS>'
                                        f'<GeoTransform>{gt}</GeoTransform>{bands}</VRTDataset>')
    with rasterio.open(tmp_path / "types.vrt") as src:
        assert why_not_exact(src, [1, 2], True) == "bands of different data types"
    with pytest.raises(ValueError, match="different data types"):
        stage(str(tmp_path / "types.vrt"), [1, 2], Window(0, 0, 48, 48), str(tmp_path / "x.tif"))
    assert not (tmp_path / "x.tif").exists()
    rgba = tmp_path / "rgba.tif"
    with rasterio.open(rgba, "w", driver="GTiff", width=48, height=48, count=4, dtype="uint8", crs="EPSG:32633",
                       transform=_tf(), photometric="RGB", alpha="YES") as ds:
        ds.write(np.full((4, 48, 48), 128, "uint8"))
    with rasterio.open(rgba) as src:
        assert why_not_exact(src, [1, 2, 3], True) == "per-band masks or an alpha band"


def test_stage_copies_the_chosen_bands_over_the_window(tmp_path):
    tif = _raster(tmp_path / "s2.tif", "s2", 96, 80, _tf(), nodata=0)
    out = tmp_path / "staged.tif"
    win = Window(10, 20, 50, 40)
    assert stage(tif, [3, 1], win, str(out))
    with rasterio.open(tif) as src, rasterio.open(out) as st:
        np.testing.assert_array_equal(st.read(), src.read([3, 1], window=win))
        assert st.transform == src.window_transform(win) and st.crs == src.crs
        assert st.nodata == 0 and st.dtypes == ("uint16", "uint16")
        assert st.profile["tiled"] and st.interleaving.name == "band" and st.compression is None
    with rasterio.open(tif) as src:  # the grid's own pixels when on the grid, clipped to the file
        grid = Grid(src.crs, src.transform * Affine.translation(-5, 30), 40, 70)
        assert source_window(src, grid, True) == Window(0, 30, 35, 50)


def test_a_dataset_mask_is_kept(tmp_path, monkeypatch):
    """An internal mask (one for all bands) is copied with the bands of a pixel-interleaved file,
    window by window along its 16 px tiles (the window does not start on a tile)."""
    monkeypatch.setattr(staging, "STRIP_ROWS", 16)
    a = np.arange(3 * 40 * 50, dtype="uint16").reshape(3, 40, 50) + 1
    tif, mask = _masked(tmp_path / "masked.tif", a, 16, np.s_[5:15, 10:30])
    with rasterio.open(tif) as src:
        assert mask_kind(src, [1, 2]) == "dataset"
    assert stage(str(tif), [2, 1], Window(5, 2, 40, 30), str(tmp_path / "st.tif"))
    with rasterio.open(tmp_path / "st.tif") as st:
        assert mask_kind(st, [1, 2]) == "dataset"
        np.testing.assert_array_equal(st.read_masks(1), mask[2:32, 5:45])
        np.testing.assert_array_equal(st.read(), a[[1, 0], 2:32, 5:45])
    with rasterio.open(_raster(tmp_path / "nd.tif", "s2", 16, 16, _tf(), nodata=0)) as src:
        assert mask_kind(src, list(range(1, 13))) == "values"


def test_a_cancel_while_staging_leaves_nothing(tmp_path):
    vrt = build_band_vrt(USA, str(tmp_path / "usa.vrt"))
    out = tmp_path / "out"
    out.mkdir()
    seen = []
    with pytest.raises(Cancelled):
        run_scene(SceneRequest(model=MODEL, optical=vrt, optical_bands=USA_BANDS, stage="always",
                               outputs={"dominant": str(out / "d.tif")}),
                  progress=seen.append, is_cancelled=lambda: len(seen) > 1)
    assert list(out.iterdir()) == []


def test_short_disk_reads_as_is_or_stops(tmp_path, monkeypatch):
    """Without room for the staged copy, auto reads the input as it is (and says so); always stops."""
    vrt = build_band_vrt(USA, str(tmp_path / "usa.vrt"))
    monkeypatch.setattr(scene_inputs, "staged_bytes", lambda *a: 1 << 60)
    res = run_scene(SceneRequest(model=MODEL, optical=vrt, optical_bands=USA_BANDS,
                                 outputs={"dominant": str(tmp_path / "d.tif")}))
    assert res.staged == {} and any("temporary copy" in w for w in res.warnings)
    with pytest.raises(ValueError, match="not enough free disk space"):
        run_scene(SceneRequest(model=MODEL, optical=vrt, optical_bands=USA_BANDS, stage="always",
                               outputs={"dominant": str(tmp_path / "e.tif")}))
    assert not (tmp_path / "e.tif").exists()


def test_compressed_copy_reads_the_same_and_stops_past_its_room(tmp_path, monkeypatch):
    """ZSTD copies, band by band (real JP2 band files in a VRT, 40-row strips) and window by
    window (a pixel-interleaved file with a mask, a window off its tiles): the same values and
    mask as the uncompressed copy, in less room; past ``max_bytes`` an error and no file."""
    from osgeo import gdal

    monkeypatch.setattr(staging, "STRIP_ROWS", 40)
    vrt = build_band_vrt(USA, str(tmp_path / "usa.vrt"))
    with rasterio.open(vrt) as src:
        win = Window(0, 0, src.width, src.height)
    idx = [i for i, b in enumerate(USA_BANDS, 1) if b != "-"]
    a = np.repeat(np.arange(700, dtype="uint16")[None, None], 3 * 600, axis=1).reshape(3, 600, 700)
    tif, _ = _masked(tmp_path / "masked.tif", a, 256, np.s_[50:90, 100:300])
    for path, bands, w in ((vrt, idx, win), (str(tif), [3, 1], Window(30, 20, 650, 560))):
        plain, packed = tmp_path / "plain.tif", tmp_path / "packed.tif"
        assert stage(path, bands, w, str(plain)) and stage(path, bands, w, str(packed), compress=True)
        with rasterio.open(plain) as p1, rasterio.open(packed) as p2:
            assert p2.compression.name == "zstd" and p1.compression is None
            np.testing.assert_array_equal(p2.read(), p1.read())
            np.testing.assert_array_equal(p2.read_masks(1), p1.read_masks(1))
            assert (p2.nodata, p2.transform, p2.descriptions) == (p1.nodata, p1.transform, p1.descriptions)
        assert packed.stat().st_size < 0.75 * plain.stat().st_size
        # each tile stored once: no larger than GDAL's own compressed copy of the same values
        ref = gdal.Translate(str(tmp_path / "ref.tif"), str(plain), creationOptions=[
            "TILED=YES", "BLOCKXSIZE=512", "BLOCKYSIZE=512", "INTERLEAVE=BAND", *staging.COMPRESSED, "PREDICTOR=2"])
        ref = None
        assert packed.stat().st_size <= 1.02 * (tmp_path / "ref.tif").stat().st_size
        with pytest.raises(staging.CopyTooLarge, match=r"outgrew the \d+ MB of free disk space"):
            stage(path, bands, w, str(tmp_path / "small.tif"), compress=True, max_bytes=packed.stat().st_size // 3)
        assert not list(tmp_path.glob("small.tif*"))
        plain.unlink()
        packed.unlink()


def test_compressed_copy_in_several_parts_stores_each_tile_once(tmp_path):
    """A copy written in several parts (two 1024-row strips per band; four 1024 px windows, the
    input's tiles cut elsewhere): the values, and no larger than GDAL's own compressed copy, so no
    tile was stored twice; past its room it stops after some parts were written."""
    from osgeo import gdal

    rng = np.random.default_rng(0)
    ramp = (np.arange(1300)[None, :] + np.arange(1100)[:, None]).astype("uint16")
    a = np.stack([ramp + rng.integers(0, 8, ramp.shape, dtype="uint16") for _ in range(4)])
    for interleave, bands in (("band", [4, 2, 1]), ("pixel", [1, 2, 3])):
        src = tmp_path / f"{interleave}.tif"
        with rasterio.open(src, "w", driver="GTiff", width=1300, height=1100, count=4, dtype="uint16",
                           crs="EPSG:32633", transform=_tf(), tiled=True, interleave=interleave) as ds:
            ds.write(a)
        packed, ref = tmp_path / f"{interleave}_st.tif", tmp_path / f"{interleave}_ref.tif"
        assert stage(str(src), bands, Window(100, 60, 1200, 1040), str(packed), compress=True)
        with rasterio.open(packed) as st:
            np.testing.assert_array_equal(st.read(), a[[b - 1 for b in bands], 60:1100, 100:1300])
        ds = gdal.Translate(str(ref), str(src), bandList=bands, srcWin=[100, 60, 1200, 1040], creationOptions=[
            "TILED=YES", "BLOCKXSIZE=512", "BLOCKYSIZE=512", "INTERLEAVE=BAND", *staging.COMPRESSED, "PREDICTOR=2"])
        ds = None
        assert packed.stat().st_size <= 1.02 * ref.stat().st_size
    seen = []  # band by band: a strip of one band is 1024 x 1300 x 3 bytes at most; kept back twice
    with pytest.raises(staging.CopyTooLarge):
        stage(str(tmp_path / "band.tif"), [1, 2, 3, 4], Window(0, 0, 1300, 1100), str(tmp_path / "x.tif"),
              progress=seen.append, compress=True, max_bytes=2 * 1024 * 1300 * 3 + packed.stat().st_size // 2)
    assert 0 < max(seen) < 1 and not list(tmp_path.glob("x.tif*"))


def test_short_disk_compresses_the_copy_or_reads_as_is(tmp_path, monkeypatch):
    """No room for the uncompressed copy but for a compressed one: the run writes that, says so,
    and its outputs are those of reading the input as it is. A copy that outgrows the room left
    is given up for reading as is (auto), or stops the run (always)."""
    vrt = build_band_vrt(USA, str(tmp_path / "usa.vrt"))
    runs, kw = {}, dict(model=MODEL, optical=vrt, optical_bands=USA_BANDS, stride=16, probability_dtype="float32")
    for name, room, mode in (("packed", 1 << 30, "auto"), ("overflow", 4096, "auto"), ("never", None, "never")):
        out = tmp_path / name
        out.mkdir()
        monkeypatch.setattr(scene_inputs, "room_left", lambda needs, path: room)
        monkeypatch.setattr(scene_inputs, "staged_bytes", lambda *a: 3 * 4096 if name == "overflow" else 2 << 30)
        runs[name] = run_scene(SceneRequest(**kw, stage=mode, outputs={k: str(out / f"{k}.tif")
                                                                        for k in ("probabilities", "dominant")}))
        assert _hidden(out) == []
    assert runs["packed"].staged == {"optical": "JPEG 2000 band files"}
    assert any("it is compressed into the 1024 MB left" in w for w in runs["packed"].warnings)
    assert runs["overflow"].staged == {} and any("outgrew" in w and "read as it is" in w
                                                  for w in runs["overflow"].warnings)
    for name in ("packed", "overflow"):
        a, b = _read_all(runs[name]), _read_all(runs["never"])
        for kind in a:
            np.testing.assert_array_equal(a[kind], b[kind])
    out = tmp_path / "always"
    out.mkdir()
    monkeypatch.setattr(scene_inputs, "room_left", lambda needs, path: 4096)
    monkeypatch.setattr(scene_inputs, "staged_bytes", lambda *a: 3 * 4096)
    with pytest.raises(ValueError, match="not enough free disk space: the compressed copy .* outgrew"):
        run_scene(SceneRequest(**kw, stage="always", outputs={"dominant": str(out / "d.tif")}))
    assert list(out.iterdir()) == []


def test_bad_stage_option_and_unreadable_input(tmp_path):
    tif = _raster(tmp_path / "s2.tif", "s2", 32, 32, _tf())
    with pytest.raises(ValueError, match="stage must be one of auto, always, never"):
        run_scene(SceneRequest(model=MODEL, optical=tif, stage="sometimes", outputs={"dominant": str(tmp_path / "d.tif")}))
    bad = tmp_path / "broken.jp2"
    bad.write_bytes(b"\x00\x00\x00\x0cjP  \r\n\x87\n" + b"\x00" * 64)
    with pytest.raises(ValueError, match="broken.jp2"):
        stage(str(bad), [1], Window(0, 0, 8, 8), str(tmp_path / "x.tif"))
    assert not (tmp_path / "x.tif").exists()


def test_cli_stages_jp2_band_files_and_says_so(tmp_path, capsys):
    import argparse

    from core.engine.cli import add_commands

    p = argparse.ArgumentParser(prog="python -m core")
    add_commands(p.add_subparsers(dest="command", required=True))
    a = p.parse_args(["classify", "--optical", *USA, "--optical-bands", ",".join(USA_BANDS), "--quiet",
                      "--dominant", str(tmp_path / "d.tif")])
    assert a.stage == "auto" and a.func(a) == 0
    assert "optical input (JPEG 2000 band files) was decoded once" in capsys.readouterr().out
    assert sorted(q.name for q in tmp_path.iterdir()) == ["d.tif"]


def test_band_copy_with_a_mask_reports_progress_in_order_and_fits_its_estimate(tmp_path, monkeypatch):
    monkeypatch.setattr(staging, "STRIP_ROWS", 16)
    tif = tmp_path / "one.tif"
    with rasterio.open(tif, "w", driver="GTiff", width=600, height=40, count=1, dtype="uint16", crs="EPSG:32633",
                       transform=_tf()) as ds:
        ds.write(np.full((1, 40, 600), 9, "uint16"))
        mask = np.full((40, 600), 255, np.uint8)
        mask[:10] = 0
        ds.write_mask(mask)
    seen = []
    win = Window(0, 0, 600, 40)
    assert stage(str(tif), [1], win, str(tmp_path / "st.tif"), progress=seen.append)
    assert seen == sorted(seen) and seen[-1] == 1.0  # the band, then the mask
    with rasterio.open(tif) as src:
        on_disk = sum(p.stat().st_size for p in tmp_path.glob("st.tif*"))
        assert on_disk <= staged_bytes(src, [1], win)  # whole 512 px tiles and the mask counted
    with rasterio.open(tmp_path / "st.tif") as st:
        np.testing.assert_array_equal(st.read_masks(1), mask)


@pytest.mark.parametrize("compressed", [False, True])
@pytest.mark.parametrize("exceptions", [False, True])
def test_a_failed_write_is_an_error_and_leaves_no_copy(tmp_path, monkeypatch, exceptions, compressed):
    """A disk that fills up while the copy is written (a file size limit here): an error, never a
    copy with zeros where its tiles did not fit, whether or not GDAL raises exceptions. For a
    compressed copy on a disk that is then full, ``CopyTooLarge``: the run reads the input as it is."""
    import resource
    import signal
    from collections import namedtuple

    from osgeo import gdal

    src = tmp_path / "big.tif"
    values = np.random.default_rng(0).integers(0, 65535, (2, 1024, 1024), dtype="uint16")  # incompressible
    with rasterio.open(src, "w", driver="GTiff", width=1024, height=1024, count=2, dtype="uint16", crs="EPSG:32633",
                       transform=_tf(), tiled=True, compress="deflate") as ds:
        ds.write(values)
    if compressed:
        monkeypatch.setattr(staging.shutil, "disk_usage", lambda p: namedtuple("U", "total used free")(9, 9, 0))
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    was_on = gdal.GetUseExceptions()
    gdal.UseExceptions() if exceptions else gdal.DontUseExceptions()
    resource.setrlimit(resource.RLIMIT_FSIZE, (3_000_000, old_limit[1]))  # the copy needs 4 MB
    try:
        with pytest.raises(staging.CopyTooLarge if compressed else ValueError,
                           match="outgrew the free disk space" if compressed else "big.tif into a temporary copy"):
            stage(str(src), [1, 2], Window(0, 0, 1024, 1024), str(tmp_path / "st.tif"), compress=compressed,
                  max_bytes=1 << 40 if compressed else None)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)
        gdal.UseExceptions() if was_on else gdal.DontUseExceptions()
    assert not list(tmp_path.glob("st.tif*"))
