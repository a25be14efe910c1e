"""GDAL's exception mode is the process's (QGIS shares osgeo.gdal): the engine's calls raise
inside, and leave it as they found it."""
from __future__ import annotations

from pathlib import Path

import pytest
from osgeo import gdal

from core.engine.align import build_band_vrt
from core.io.gdal_messages import gdal_exceptions

USA = sorted(str(p) for p in (Path(__file__).resolve().parents[1] / "data" / "s2-l1c-usa").glob("*.jp2"))[:2]


@pytest.mark.parametrize("before", [False, True])
def test_the_process_setting_is_kept(tmp_path, before) -> None:
    was = gdal.GetUseExceptions()
    (gdal.UseExceptions if before else gdal.DontUseExceptions)()
    try:
        with pytest.raises(RuntimeError):
            with gdal_exceptions() as g:
                g.Open(str(tmp_path / "missing.tif"))
        assert gdal.GetUseExceptions() == before
        with gdal_exceptions(False) as g:  # the other way round: errors returned, not raised
            assert g.Open(str(tmp_path / "missing.tif")) is None
        assert gdal.GetUseExceptions() == before
        assert USA, "the USA L1C band files of tests/data are missing"
        out = build_band_vrt(USA, str(tmp_path / "usa.vrt"))
        assert Path(out).is_file() and gdal.GetUseExceptions() == before
    finally:
        (gdal.UseExceptions if was else gdal.DontUseExceptions)()
