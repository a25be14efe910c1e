"""Damaged or truncated inputs (a download cut short) are a clear error that names the file,
never outputs computed from tiles GDAL could not decode (open_raster.py: GDAL 3.6's
multi-threaded GeoTIFF decoding returned such tiles as zeros without an error)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import rasterio
from osgeo import gdal

from core.engine import SceneRequest, run_scene, scene_inputs
from core.engine.align import build_band_vrt
from core.engine.open_raster import decodes_safely_on_threads

from .test_engine_edges import MODEL, _raster, _tf
from .test_engine_scenes import USA
from .test_staging import USA_BANDS


def _deflate(src: str, out: Path, tiled: bool = True) -> Path:
    layout = ["TILED=YES", "BLOCKXSIZE=128", "BLOCKYSIZE=128"] if tiled else ["BLOCKYSIZE=16"]  # strips of 16 rows
    ds = gdal.Translate(str(out), src, creationOptions=[*layout, "COMPRESS=DEFLATE"])
    ds = None
    return out


def _damage_tile(path: Path, x: int = 1, y: int = 1) -> None:
    """Overwrite the bytes of band 1's tile (or strip) (x, y) with garbage."""
    ds = gdal.Open(str(path))
    band = ds.GetRasterBand(1)
    off, size = (int(band.GetMetadataItem(f"BLOCK_{k}_{x}_{y}", "TIFF")) for k in ("OFFSET", "SIZE"))
    ds = None
    with open(path, "r+b") as f:
        f.seek(off)
        f.write(b"\xff" * size)


@pytest.mark.parametrize("tiled", [True, False])
@pytest.mark.parametrize("damage", ["garbled tile", "cut short"])
def test_a_damaged_geotiff_is_an_error_and_writes_nothing(tmp_path, monkeypatch, damage, tiled):
    """Tiled and striped files, read in parts by several threads (four cores said), with GDAL
    told to decode on all cores by the environment (which the engine must not follow)."""
    from core.engine import band_reader
    monkeypatch.setattr(band_reader.os, "cpu_count", lambda: 4)
    monkeypatch.setenv("GDAL_NUM_THREADS", "ALL_CPUS")
    raw = _raster(tmp_path / "raw.tif", "s2", 256, 256, _tf())
    tif = _deflate(raw, tmp_path / "s2.tif", tiled)
    if damage == "garbled tile":
        _damage_tile(tif, *((1, 1) if tiled else (0, 11)))  # in a part that a helper thread reads
    else:
        os.truncate(tif, int(tif.stat().st_size * 0.6))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ValueError, match=r"the optical raster .*s2.tif could not be read \(rows 0-256\): .*"
                                         r"IReadBlock failed.* The file may be damaged or incomplete"):
        run_scene(SceneRequest(model=MODEL, optical=str(tif), stride=16, outputs={"dominant": str(out / "d.tif")}))
    assert list(out.iterdir()) == []


def test_a_staged_copy_that_cannot_be_read_names_the_input(tmp_path, monkeypatch):
    """A read error of the temporary copy names the user's input and the copy, and says what to do."""
    vrt = build_band_vrt(USA, str(tmp_path / "usa.vrt"))
    real_stage = scene_inputs.stage

    def stage_then_cut(path, idx, win, out, *a, **k):
        done = real_stage(path, idx, win, out, *a, **k)
        os.truncate(out, os.path.getsize(out) // 2)
        return done

    monkeypatch.setattr(scene_inputs, "stage", stage_then_cut)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ValueError, match=r"the temporary copy of the optical raster .*usa.vrt \(.*staged.tif\) could "
                                         r"not be read .* read the input as it is \(stage 'never'\)"):
        run_scene(SceneRequest(model=MODEL, optical=vrt, optical_bands=USA_BANDS, stride=16,
                               outputs={"dominant": str(out / "d.tif")}))
    assert list(out.iterdir()) == []


def test_only_jpeg2000_is_decoded_on_several_threads(tmp_path):
    tif = _raster(tmp_path / "s2.tif", "s2", 32, 32, _tf())
    cases = {USA[1]: True, build_band_vrt(USA, str(tmp_path / "usa.vrt")): True, tif: False,
             build_band_vrt([tif], str(tmp_path / "tif.vrt")): False}
    for path, threads in cases.items():
        with rasterio.open(path) as src:
            assert decodes_safely_on_threads(src) is threads, path


def test_the_command_line_says_it_once(tmp_path):
    """python -m core classify on a damaged file: one error line that quotes GDAL's reason, not
    GDAL's own ERROR lines from every reading thread before it."""
    import subprocess
    import sys

    raw = _raster(tmp_path / "raw.tif", "s2", 256, 256, _tf())
    tif = _deflate(raw, tmp_path / "s2.tif")
    _damage_tile(tif)
    root = Path(__file__).resolve().parents[2]
    r = subprocess.run([sys.executable, "-m", "core", "classify", "--optical", str(tif), "--stride", "16",
                        "--dominant", str(tmp_path / "d.tif"), "--quiet"], cwd=root, capture_output=True, text=True)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: the optical raster"), r.stderr
    assert "IReadBlock failed" in lines[0] and "damaged or incomplete" in lines[0]
    assert not (tmp_path / "d.tif").exists()
