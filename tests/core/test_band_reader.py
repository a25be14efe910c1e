"""BandReader: direct reads of rasters already on the reference grid, and how they find no-data."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import rasterio
from rasterio.transform import Affine

from core.engine.align import Grid, build_band_vrt
from core.engine.band_reader import BandReader, on_grid
from core.engine.open_raster import mask_plan

UTM = "EPSG:32633"


def _write(path, a: np.ndarray, transform: Affine, nodata=None, dataset_mask: np.ndarray | None = None) -> str:
    with rasterio.open(path, "w", driver="GTiff", width=a.shape[2], height=a.shape[1], count=a.shape[0],
                       dtype=a.dtype, crs=UTM, transform=transform, nodata=nodata) as ds:
        ds.write(a)
        if dataset_mask is not None:
            ds.write_mask(dataset_mask.astype("uint8") * 255)
    return str(path)


def _per_band_nodata(folder, a: np.ndarray, transform: Affine, nodata: tuple) -> str:
    """A VRT of single-band files, each with its own nodata value (as build_band_vrt makes for JP2 bands)."""
    bands = [_write(folder / f"s2_B0{i + 2}.tif", a[i: i + 1], transform, nodata=nd) for i, nd in enumerate(nodata)]
    return build_band_vrt(bands, str(folder / "stack.vrt"))


def _grid(x0: float, y0: float, w: int, h: int, res: float = 10.0) -> Grid:
    return Grid(rasterio.crs.CRS.from_string(UTM), Affine(res, 0, x0, 0, -res, y0), w, h)


def _values(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(100, 3000, shape).astype("uint16")


def test_on_grid_needs_same_crs_pixel_size_and_a_whole_pixel_offset(tmp_path):
    p = _write(tmp_path / "a.tif", _values((2, 20, 30)), Affine(10, 0, 500000, 0, -10, 4000000))
    with rasterio.open(p) as src:
        assert on_grid(src, _grid(500000, 4000000, 30, 20))
        assert on_grid(src, _grid(500050, 3999930, 10, 10))           # 5 columns, 7 rows in
        assert on_grid(src, _grid(499980, 4000020, 10, 10))           # 2 pixels before it: still on grid
        assert not on_grid(src, _grid(500005, 4000000, 10, 10))       # half a pixel off
        assert not on_grid(src, _grid(500000, 4000000, 10, 10, 20.0))  # other pixel size
        g = _grid(500000, 4000000, 10, 10)
        assert not on_grid(src, Grid(rasterio.crs.CRS.from_epsg(32632), g.transform, 10, 10))


def test_direct_read_equals_the_warped_read_on_the_same_grid(tmp_path):
    """A co-registered raster skips the warper: same values, same NaN for no-data and outside."""
    a = _values((3, 40, 50))
    a[1, 5, 7] = 0                      # one band at nodata: the whole pixel is no-data
    a[:, 20:22, 30:35] = 0              # a hole
    p = _write(tmp_path / "s2.tif", a, Affine(10, 0, 500000, 0, -10, 4000000), nodata=0)
    g = _grid(500000 + 10 * 4, 4000000 - 10 * 3, 40, 30)  # a window of it, 3 rows and 4 columns in
    direct, warped = BandReader(p, [1, 2, 3], g, True), BandReader(p, [1, 2, 3], g, False, resampling=
                                                                  rasterio.enums.Resampling.nearest)
    try:
        for args in ((0, 0, 30, 40), (-5, -6, 20, 25), (25, 35, 10, 10), (40, 50, 5, 5)):
            for inter in (False, True):
                d, w = direct.read(*args, pixel_interleaved=inter), warped.read(*args)
                # the engine's rule: a pixel with any band at nodata is no-data (GDAL's warper only
                # drops a pixel when all its bands are: the one-band pixel (2, 3) is left out here)
                bad, wbad = np.isnan(d).any(0), np.isnan(w).any(0)
                r, c = 2 - args[0], 3 - args[1]
                if 0 <= r < args[2] and 0 <= c < args[3]:
                    assert bad[r, c] and not wbad[r, c]
                    wbad[r, c] = True
                np.testing.assert_array_equal(bad, wbad)
                np.testing.assert_array_equal(d[:, ~bad], w[:, ~bad])
        d = direct.read(0, 0, 30, 40)
        assert np.isnan(d[:, 5 - 3, 7 - 4]).all()       # every band NaN where one band was nodata
        assert np.isnan(d[:, 17:19, 26:31]).all()
        assert np.isfinite(d[:, 0, 0]).all()
        assert np.isnan(direct.read(-2, 0, 4, 4)[:, :2]).all()  # outside the grid
    finally:
        direct.close()
        warped.close()


def test_mask_plans(tmp_path):
    tf = Affine(10, 0, 500000, 0, -10, 4000000)
    a = _values((2, 8, 8))
    with rasterio.open(_write(tmp_path / "none.tif", a, tf)) as s:
        assert mask_plan(s, [1, 2]) == ("none", None)
    with rasterio.open(_write(tmp_path / "nd.tif", a, tf, nodata=0)) as s:
        assert mask_plan(s, [1, 2]) == ("nodata", [(None, 0.0)])
    with rasterio.open(_per_band_nodata(tmp_path, a, tf, (0, 7))) as s:
        assert mask_plan(s, [1, 2]) == ("nodata", [(0, 0.0), (1, 7.0)])
    with rasterio.open(_write(tmp_path / "nan.tif", a.astype("float32"), tf, nodata=float("nan"))) as s:
        assert mask_plan(s, [1, 2]) == ("none", None)  # NaN stays NaN on its own
    m = np.ones((8, 8), bool)
    m[2:4, 2:4] = False
    p = _write(tmp_path / "msk.tif", a, tf, dataset_mask=m)
    with rasterio.open(p) as s:
        assert mask_plan(s, [1, 2]) == ("dataset", [1])
    r = BandReader(p, [1, 2], _grid(500000, 4000000, 8, 8), True)
    try:
        got = r.read(0, 0, 8, 8)
    finally:
        r.close()
    assert np.isnan(got[:, ~m]).all() and np.isfinite(got[:, m]).all()


def test_per_band_nodata_values(tmp_path):
    a = _values((2, 6, 6))
    a[0, 1, 1] = 0   # band 1 nodata is 0
    a[1, 2, 2] = 7   # band 2 nodata is 7
    a[1, 3, 3] = 0   # 0 is a value in band 2
    p = _per_band_nodata(tmp_path, a, Affine(10, 0, 500000, 0, -10, 4000000), (0, 7))
    r = BandReader(p, [1, 2], _grid(500000, 4000000, 6, 6), True)
    try:
        got = r.read(0, 0, 6, 6, pixel_interleaved=True)
    finally:
        r.close()
    bad = np.isnan(got).any(0)
    assert bad.sum() == 2 and bad[1, 1] and bad[2, 2]
    assert np.isnan(got[:, bad]).all()
    assert got[1, 3, 3] == pytest.approx(0.0)


def test_stored_type_read_matches_the_float_read(tmp_path):
    """uint16 blocks are kept as uint16 until their encoder runs: same values, same no-data."""
    a = _values((3, 40, 50))
    a[1, 5, 7] = 0
    a[:, 20:22, 30:35] = 0
    p = _write(tmp_path / "s2.tif", a, Affine(10, 0, 500000, 0, -10, 4000000), nodata=0)
    r = BandReader(p, [1, 2, 3], _grid(500000 + 40, 4000000 - 30, 40, 30), True)
    try:
        assert r.stored_dtype == np.uint16
        for box in ((0, 0, 30, 40), (-5, -6, 20, 25), (25, 35, 10, 10), (40, 50, 5, 5)):
            f = r.read(*box, pixel_interleaved=True)
            raw, invalid = r.read_stored(*box, pixel_interleaved=True)
            assert raw.dtype == np.uint16 and raw.strides[0] == 2  # bands innermost (channels-last)
            np.testing.assert_array_equal(invalid, np.isnan(f).any(0))
            np.testing.assert_array_equal(raw[:, ~invalid].astype(np.float32), f[:, ~invalid])
            if box[0] < 0:
                assert (raw[:, : -box[0]] == 0).all()  # outside the input
    finally:
        r.close()
    f32 = _write(tmp_path / "f.tif", a.astype("float32"), Affine(10, 0, 500000, 0, -10, 4000000), nodata=0)
    warped = BandReader(p, [1, 2, 3], _grid(500005, 4000000, 10, 10), False)
    try:
        assert warped.stored_dtype is None  # warped reads are float32
        assert BandReader(f32, [1], _grid(500000, 4000000, 10, 10), True).stored_dtype is None
        with pytest.raises(ValueError, match="stored type"):
            warped.read_stored(0, 0, 2, 2)
    finally:
        warped.close()


def test_direct_read_of_a_raster_that_starts_inside_the_grid(tmp_path):
    """A co-registered second input may start after the grid origin (negative offset): the
    rows and columns before it are outside (NaN), the rest are its pixels."""
    a = _values((2, 10, 12))
    p = _write(tmp_path / "s1.tif", a, Affine(10, 0, 500000, 0, -10, 4000000))
    g = _grid(500000 - 30, 4000000 + 20, 15, 12)  # 3 columns and 2 rows before the raster
    with rasterio.open(p) as src:
        assert on_grid(src, g)
    r = BandReader(p, [1, 2], g, True)
    try:
        got = r.read(0, 0, 12, 15)
        raw, invalid = r.read_stored(0, 0, 12, 15, pixel_interleaved=True)
    finally:
        r.close()
    assert np.isnan(got[:, :2]).all() and np.isnan(got[:, :, :3]).all()
    np.testing.assert_array_equal(got[:, 2:, 3:], a[:, :10, :12].astype(np.float32))
    assert invalid[:2].all() and invalid[:, :3].all() and not invalid[2:, 3:].any()
    np.testing.assert_array_equal(raw[:, 2:, 3:], a)


def _tiled(path, a: np.ndarray, transform: Affine, nodata=None, tile: int = 16) -> str:
    with rasterio.open(path, "w", driver="GTiff", width=a.shape[2], height=a.shape[1], count=a.shape[0],
                       dtype=a.dtype, crs=UTM, transform=transform, nodata=nodata, tiled=True,
                       blockxsize=tile, blockysize=tile, compress="deflate") as ds:
        ds.write(a)
    return str(path)


def test_chunks_are_cut_where_tile_rows_start(tmp_path, monkeypatch):
    from core.engine import band_reader
    p = _tiled(tmp_path / "t.tif", _values((1, 64, 32)), Affine(10, 0, 500000, 0, -10, 4000000))
    r = BandReader(p, [1], _grid(500000, 4000000, 32, 64), True)
    try:
        assert r.tile_rows == 16
        monkeypatch.setattr(band_reader, "CHUNK_ROWS", 32)
        W = rasterio.windows.Window
        assert r._chunks(W(0, 5, 32, 50)) == [(0, 27), (27, 50)]   # rows 5..31, 32..54
        assert r._chunks(W(0, 0, 32, 64)) == [(0, 32), (32, 64)]
        monkeypatch.setattr(band_reader, "CHUNK_ROWS", 1)            # never less than a tile row
        assert r._chunks(W(0, 8, 32, 20)) == [(0, 8), (8, 20)]
    finally:
        r.close()


@pytest.mark.parametrize("chunk", [16, 48, 4096])
def test_chunked_reads_equal_one_read(tmp_path, monkeypatch, chunk):
    """Reading by chunks (and reopening between them) changes nothing in the values, the no-data
    or the pixels outside, for direct, stored and warped reads."""
    from core.engine import band_reader
    a = _values((3, 90, 70))
    a[1, 40:45, 10:60] = 0   # no-data across a chunk edge
    p = _tiled(tmp_path / "t.tif", a, Affine(10, 0, 500000, 0, -10, 4000000), nodata=0)
    g = _grid(500000 - 10 * 3, 4000000 + 10 * 5, 76, 100)  # 5 rows above and 3 columns left of the file
    ref = {}
    for ch in (100000, chunk):
        monkeypatch.setattr(band_reader, "CHUNK_ROWS", ch)
        direct, warped = BandReader(p, [1, 2, 3], g, True), BandReader(p, [1, 2, 3], _grid(
            500000 - 10 * 3 + 5, 4000000 + 10 * 5, 76, 100), False)
        try:
            got = (direct.read(-4, 2, 100, 60, pixel_interleaved=True), *direct.read_stored(0, 0, 100, 76),
                   warped.read(0, 0, 100, 76))
        finally:
            direct.close()
            warped.close()
        if ch == 100000:
            ref = got
            assert np.isnan(got[0][:, 5 + 4 + 40, 20]).all() and got[2][5 + 41, 3 + 20]
        else:
            for x, y in zip(got, ref):
                np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("tiled", [True, False])
def test_tile_columns_decoded_side_by_side_equal_one_read(tmp_path, monkeypatch, tiled):
    """A compressed GeoTIFF's chunks read in parts (tile columns; rows of whole strips for a
    striped file) by several handles on several threads (``BandReader.helpers``): the same
    values, no-data and outside pixels as one handle, for windows that start and end inside
    tiles or strips or outside the file, in chunks of about 48 rows."""
    from core.engine import band_reader
    monkeypatch.setattr(band_reader, "CHUNK_ROWS", 48)
    a = _values((3, 90, 150))
    a[2, 30:60, 40:120] = 0  # no-data across tiles, parts and a chunk edge
    tf = Affine(10, 0, 500000, 0, -10, 4000000)
    if tiled:
        p = _tiled(tmp_path / "t.tif", a, tf, nodata=0)
    else:
        with rasterio.open(tmp_path / "t.tif", "w", driver="GTiff", width=150, height=90, count=3, dtype="uint16",
                           crs=UTM, transform=tf, nodata=0, blockysize=7, compress="deflate") as ds:
            ds.write(a)
        p = str(tmp_path / "t.tif")
    g = _grid(500000 - 10 * 3, 4000000 + 10 * 5, 160, 100)
    got, readers = {}, set()
    real_read = rasterio.io.DatasetReader.read
    monkeypatch.setattr(rasterio.io.DatasetReader, "read", lambda self, *a, **k: readers.add(
        threading.current_thread().name) or real_read(self, *a, **k))
    for cores in (1, 4):
        monkeypatch.setattr(band_reader.os, "cpu_count", lambda: cores)
        r = BandReader(p, [3, 1], g, True)
        readers.clear()
        try:
            assert len(r.helpers) == cores - 1
            got[cores] = (r.read(-4, 2, 100, 150, pixel_interleaved=True), *r.read_stored(7, 13, 80, 101))
        finally:
            r.close()
        # parts read side by side: on more than one thread (not necessarily all: a loaded machine's
        # scheduler may hand two parts to one helper while another starts)
        assert len(readers) == 1 if cores == 1 else len(readers) > 1
    assert np.isnan(got[1][0][:, 4 + 5 + 35, 3 + 50 - 2]).all() and got[1][2][5 + 35 - 7, 3 + 50 - 13]
    for x, y in zip(got[4], got[1]):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("cores", [1, 4])
def test_reads_told_the_next_keep_the_columns_it_shares(tmp_path, monkeypatch, cores):
    """Blocks along a row, each told the next (``then``): every read equals a read on its own
    (values, no-data, pixels outside the file; float and stored, both layouts, with helpers or
    not), and the next read decodes only from the end of the kept tile column on. A read that
    is not the one announced, or of other rows, ignores what was kept."""
    from core.engine import band_reader
    monkeypatch.setattr(band_reader.os, "cpu_count", lambda: cores)
    monkeypatch.setattr(band_reader, "CHUNK_ROWS", 32)
    a = _values((3, 90, 150))
    a[1, 20:70, 55:75] = 0  # no-data across the columns two blocks share
    p = _tiled(tmp_path / "t.tif", a, Affine(10, 0, 500000, 0, -10, 4000000), nodata=0)
    g = _grid(500000 - 10 * 3, 4000000 + 10 * 5, 160, 100)  # the file starts 5 rows and 3 columns in
    boxes = [(-4, c, 70, 60) for c in (-10, 30, 70, 110)] + [(50, c, 60, 60) for c in (-10, 30, 70)] + [
        (50, 125, 60, 40), (40, 70, 50, 50)]  # then one not announced: other columns, other rows
    fresh = []
    real = BandReader._read_chunk
    monkeypatch.setattr(BandReader, "_read_chunk", lambda self, cw, *x: fresh.append((self, cw)) or real(self, cw, *x))
    for interleaved in (True, False):
        for stored in (True, False):
            r, alone = BandReader(p, [2, 3], g, True), BandReader(p, [2, 3], g, True)
            try:
                assert r._keeps
                for k, box in enumerate(boxes):
                    then = boxes[k + 1] if k < 7 else (50, 140, 60, 20)
                    fresh.clear()
                    if stored:
                        got, want = r.read_stored(*box, interleaved, then=then), alone.read_stored(*box, interleaved)
                    else:
                        got, want = (r.read(*box, interleaved, then=then),), (alone.read(*box, interleaved),)
                    for x, y in zip(got, want):
                        np.testing.assert_array_equal(x, y)
                    # file columns = grid columns - 3; after (-4, -10, 70, 60) (file columns 0..46) the
                    # read kept 27..47, up to its last tile's end, so (-4, 30, 70, 60) decodes from 48 on
                    first = {1: 48, 2: 96, 3: 128, 5: 48, 6: 96, 7: 128}.get(k, box[1] - 3 if box[1] > 0 else 0)
                    assert {int(w.col_off) for rd, w in fresh if rd is r and w.width} == {first}
                    if k == 1:  # file row 30, column 58 is no-data, in the columns this read was given
                        assert got[1][39, 31] if stored else np.isnan(got[0][:, 39, 31]).all()
            finally:
                r.close()
                alone.close()


def test_odd_next_reads_and_sar_in_db_read_the_same(tmp_path):
    """A next read inside this one (narrower) keeps nothing and breaks nothing; linear SAR
    converted to dB reads the same with kept columns; a file with an alpha band keeps nothing
    (its mask would be read over the whole window, decoding the kept tiles again)."""
    tf = Affine(10, 0, 500000, 0, -10, 4000000)
    lin = np.random.default_rng(3).uniform(1e-4, 0.5, (2, 40, 80)).astype("float32")
    lin[0, 5:30, 28:40] = 0  # no valid dB: NaN, in the columns two reads share
    p = _tiled(tmp_path / "s1.tif", lin, tf)
    g = _grid(500000, 4000000, 80, 40)
    r, alone = BandReader(p, [1, 2], g, True, to_db=True), BandReader(p, [1, 2], g, True, to_db=True)
    try:
        np.testing.assert_array_equal(r.read(0, 0, 40, 60, then=(0, 10, 40, 20)), alone.read(0, 0, 40, 60))
        assert r._kept is None
        for box, then in (((0, 0, 40, 40), (0, 24, 40, 40)), ((0, 24, 40, 40), (0, 48, 40, 32)), ((0, 48, 40, 32), None)):
            np.testing.assert_array_equal(r.read(*box, then=then), alone.read(*box))
            if then is not None:
                assert r._kept is not None
    finally:
        r.close()
        alone.close()
    rgba = _values((4, 40, 80))
    rgba[3] = 255
    rgba[3, :, 30:35] = 0
    with rasterio.open(tmp_path / "rgba.tif", "w", driver="GTiff", width=80, height=40, count=4, dtype="uint16",
                       crs=UTM, transform=tf, tiled=True, blockxsize=16, blockysize=16, compress="deflate",
                       photometric="RGB", alpha="YES") as ds:
        ds.write(rgba)
    r, alone = BandReader(str(tmp_path / "rgba.tif"), [1, 2, 3], g, True), \
        BandReader(str(tmp_path / "rgba.tif"), [1, 2, 3], g, True)
    try:
        assert not r._keeps
        np.testing.assert_array_equal(r.read(0, 0, 40, 40, then=(0, 24, 40, 40)), alone.read(0, 0, 40, 40))
        assert np.isnan(r.read(0, 24, 40, 40)[:, :, 6:11]).all()
    finally:
        r.close()
        alone.close()


def test_uncompressed_reads_keep_nothing(tmp_path):
    """An uncompressed file is read without decoding: nothing to keep for the next read."""
    p = _write(tmp_path / "u.tif", _values((2, 40, 60)), Affine(10, 0, 500000, 0, -10, 4000000))
    r = BandReader(p, [1, 2], _grid(500000, 4000000, 60, 40), True)
    try:
        r.read(0, 0, 40, 30, then=(0, 20, 40, 30))
        assert not r._keeps and r._kept is None
    finally:
        r.close()


def test_reads_leave_no_tiles_in_gdal_block_cache(tmp_path):
    """A scene's tiles must not pile up in GDAL's process-wide cache (module docstring)."""
    gdal = pytest.importorskip("osgeo.gdal")
    a = _values((12, 600, 600))
    p = _tiled(tmp_path / "t.tif", a, Affine(10, 0, 500000, 0, -10, 4000000), tile=128)
    old = gdal.GetCacheMax()
    gdal.SetCacheMax(512 * 2**20)
    try:
        before = gdal.GetCacheUsed()
        with rasterio.open(p) as ds:
            ds.read()
            if gdal.GetCacheUsed() - before < a.nbytes // 2:
                pytest.skip("rasterio and osgeo use two GDAL libraries here: the cache is not observable")
        r = BandReader(p, list(range(1, 13)), _grid(500000, 4000000, 600, 600), True)
        try:
            before = gdal.GetCacheUsed()
            v, _ = r.read_stored(0, 0, 600, 600)
            w = r.read(0, 0, 600, 600)
            assert gdal.GetCacheUsed() - before < 2**20
            np.testing.assert_array_equal(v, a)
            np.testing.assert_array_equal(w, a.astype("float32"))
        finally:
            r.close()
    finally:
        gdal.SetCacheMax(old)


@pytest.mark.parametrize("tiled", [True, False])
@pytest.mark.parametrize("interleave", ["pixel", "band"])
def test_uncompressed_files_are_read_past_gdal_cache(tmp_path, monkeypatch, tiled, interleave):
    """Uncompressed GeoTIFFs are opened with GTIFF_DIRECT_IO (core/engine/open_raster.py): the same values,
    no-data and outside pixels as the array written, for tiled and striped files in both
    interleavings, a band subset out of order and a window half outside; and GDAL's cache
    stays empty with the reader's cache drops turned off (it fills without the option)."""
    gdal = pytest.importorskip("osgeo.gdal")
    monkeypatch.setattr(BandReader, "_drop_cached_tiles", lambda self: None)
    a = _values((12, 300, 260))
    a[4, 100:110, 30:90] = 0
    p = str(tmp_path / "u.tif")
    opts = dict(tiled=True, blockxsize=64, blockysize=64) if tiled else {}
    with rasterio.open(p, "w", driver="GTiff", width=260, height=300, count=12, dtype="uint16", crs=UTM,
                       transform=Affine(10, 0, 500000, 0, -10, 4000000), nodata=0, interleave=interleave,
                       **opts) as ds:
        ds.write(a)
    idx = [5, 2, 12, 3]
    old = gdal.GetCacheMax()
    gdal.SetCacheMax(512 * 2**20)
    r = BandReader(p, idx, _grid(500000, 4000000, 260, 300), True)
    try:
        before = gdal.GetCacheUsed()
        v, invalid = r.read_stored(-20, 10, 300, 200, pixel_interleaved=True)
        f = r.read(-20, 10, 300, 200)
        used = gdal.GetCacheUsed() - before
    finally:
        r.close()
        gdal.SetCacheMax(old)
    want = np.zeros((4, 300, 200), "uint16")
    want[:, 20:] = a[[i - 1 for i in idx], :280, 10:210]
    bad = np.ones((300, 200), bool)
    bad[20:] = (want[:, 20:] == 0).any(0)
    np.testing.assert_array_equal(v, want)
    np.testing.assert_array_equal(invalid, bad)
    np.testing.assert_array_equal(np.isnan(f).all(0), bad)
    np.testing.assert_array_equal(f[:, ~bad], want[:, ~bad].astype("float32"))
    assert invalid[20 + 100, 30 - 10] and not invalid[20 + 99, 30 - 10]
    with rasterio.open(p) as ds:  # is GDAL's cache observable through osgeo here?
        before = gdal.GetCacheUsed()
        ds.read(1)
        observable = gdal.GetCacheUsed() - before >= a[0].nbytes
    if observable:
        assert used < 2**16, f"{used} bytes of tiles cached: the file was not read with direct I/O"


CRASH_CHECK = r"""
import sys
import numpy as np, rasterio
from rasterio.transform import Affine
from core.engine.align import Grid
from core.engine.band_reader import BandReader
tf = Affine(10, 0, 500000, 0, -10, 5000000)
path = sys.argv[1]
with rasterio.open(path, "w", driver="GTiff", width=70, height=60, count=3, dtype="uint16", crs="EPSG:32633",
                   transform=tf, tiled=True, blockxsize=16, blockysize=16, interleave="band", compress="deflate") as d:
    d.write(np.arange(3 * 60 * 70, dtype="uint16").reshape(3, 60, 70) % 50 + 1)
    m = np.full((60, 70), 255, np.uint8); m[10:20, 5:50] = 0; d.write_mask(m)
g = Grid(rasterio.crs.CRS.from_epsg(32633), tf * Affine.translation(-7, 13), 90, 30)
for _ in range(5):
    a = BandReader(path, [3, 1], g, True).read(0, 0, 30, 90)
print(int(np.isnan(a).sum()))
"""


def test_a_compressed_file_with_its_own_mask_reads_without_crashing(tmp_path):
    """GDAL 3.6 crashed the process (segmentation fault) decoding a compressed band-interleaved
    GeoTIFF's internal mask on several threads: such files are opened for one (open_raster.py).
    Run in a child process, so that a crash fails this test instead of the suite."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    res = subprocess.run([sys.executable, "-c", CRASH_CHECK, str(tmp_path / "masked.tif")], cwd=root,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    # 7 columns and 13 rows of the grid lie outside the file; 10 x 45 masked pixels lie inside the read
    assert int(res.stdout.split()[-1]) > 0
