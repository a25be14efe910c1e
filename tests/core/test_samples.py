"""The pixels the run's checks sample (SAR units, reflectance offset, band values): one read per
file, no-data found as a masked read finds it, for no-data values and for stored masks."""
from __future__ import annotations

import numpy as np
import rasterio
from rasterio.transform import from_origin

from core.engine import align


def _write(path, data, nodata=None, mask=None):
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                       dtype=data.dtype, crs="EPSG:32630", transform=from_origin(0, 0, 10, 10), nodata=nodata,
                       tiled=True, blockxsize=256, blockysize=256) as ds:
        ds.write(data)
        if mask is not None:
            ds.write_mask(mask)
    return str(path)


def _masked(path, indexes):
    with rasterio.open(path) as ds:
        v = ds.read(indexes, masked=True).astype("float64").filled(np.nan).reshape(len(indexes), -1)
    return v[:, np.isfinite(v).all(0)]


def test_nodata_values_are_found_per_band(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.integers(1, 3000, (3, 300, 300)).astype("uint16")
    data[1, :50] = 0  # no data in band 2 only: band 1 alone keeps those pixels
    data[:, 200:, 250:] = 0
    path = _write(tmp_path / "nd.tif", data, nodata=0)
    with rasterio.open(path) as src:
        s = align.Samples(windows=20)  # 20 x 64 px covers the file: read whole
        for idx in ([1], [1, 2], [3, 2, 1]):
            np.testing.assert_array_equal(s.of(src, idx), _masked(path, idx))
    assert s.of(src, [1]).shape[1] > s.of(src, [1, 2]).shape[1]


def test_a_stored_mask_is_read_as_gdal_gives_it(tmp_path):
    rng = np.random.default_rng(1)
    data = rng.normal(-12, 3, (2, 300, 300)).astype("float32")
    mask = np.full((300, 300), 255, np.uint8)
    mask[100:180, 40:260] = 0
    path = _write(tmp_path / "mask.tif", data, mask=mask)
    with rasterio.open(path) as src:
        np.testing.assert_array_equal(align.Samples(windows=20).of(src, [1, 2]), _masked(path, [1, 2]))


def test_one_read_per_file_for_every_check(tmp_path, monkeypatch):
    data = np.arange(2 * 700 * 700, dtype="float32").reshape(2, 700, 700)
    path = _write(tmp_path / "big.tif", data)
    reads = []
    real = align._sample
    monkeypatch.setattr(align, "_sample", lambda *a: reads.append(a[1]) or real(*a))
    s = align.Samples()
    with rasterio.open(path) as src:
        both = s.of(src, [1, 2])
        first = s.of(src, [1])
        assert align.sar_is_linear(src, [1, 2], s) is False
    assert reads == [[1, 2]]
    assert both.shape == (2, 25 * 64 * 64) and np.array_equal(first, both[:1])  # 5 x 5 windows of 64 px
