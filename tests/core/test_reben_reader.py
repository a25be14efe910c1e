"""The reBEN reader on the bundled real sample: band order, shapes, resampling, labels, splits."""
import numpy as np
import pytest
import rasterio

from core.data.bands import BEN19_CLASSES, S2_BANDS, S2_MEAN, S2_STD
from core.data.reben import ReBenPatches, labelled_subset, read_metadata, read_s1, read_s2
from core.paths import SAMPLE_REBEN


@pytest.fixture(scope="module")
def records():
    return read_metadata(SAMPLE_REBEN)


def test_metadata_resolves_every_patch_and_split(records):
    assert len(records) == 69
    assert {r.split for r in records} == {"train", "validation", "test"}
    assert sum(r.split == "train" for r in records) == 29
    assert all(r.s1_dir is not None for r in records)


def test_s2_band_order_and_resampling(records):
    rec = records[0]
    x = read_s2(rec)
    assert x.shape == (12, 120, 120) and x.dtype == np.float32
    # 10 m bands are read unchanged: B04 is index 3 and equals the file
    with rasterio.open(rec.s2_dir / f"{rec.patch_id}_B04.tif") as src:
        np.testing.assert_array_equal(x[S2_BANDS.index("B04")], src.read(1).astype(np.float32))
    # a 60 m band (20x20) is upsampled to 120x120 and keeps its mean
    with rasterio.open(rec.s2_dir / f"{rec.patch_id}_B01.tif") as src:
        native = src.read(1).astype(np.float32)
    assert native.shape == (20, 20)
    assert x[0].mean() == pytest.approx(native.mean(), rel=0.02)
    # band identity: B08 (NIR) differs from B02 (blue) over real land
    assert not np.allclose(x[1], x[7])


def test_s1_in_db(records):
    x = read_s1(records[0])
    assert x.shape == (2, 120, 120)
    assert -40 < np.nanmedian(x[0]) < 5 and np.nanmedian(x[1]) < np.nanmedian(x[0])  # VH below VV


def test_dataset_labels_and_normalisation(records):
    ds = ReBenPatches(SAMPLE_REBEN, ("train",))
    item = ds[0]
    assert item["s2"].shape == (12, 120, 120) and item["s1"].shape == (2, 120, 120)
    names = [BEN19_CLASSES[i] for i in np.flatnonzero(item["label"].numpy())]
    assert set(names) == set(ds.records[0].labels)
    raw = read_s2(ds.records[0])
    expect = (raw[2] - S2_MEAN[2]) / S2_STD[2]
    np.testing.assert_allclose(item["s2"][2].numpy(), expect, rtol=1e-5, atol=1e-5)


def test_label_fraction_is_seeded_and_sized():
    a = labelled_subset(29, 0.1, seed=1)
    assert len(a) == 3 and np.array_equal(a, labelled_subset(29, 0.1, seed=1))
    assert not np.array_equal(a, labelled_subset(29, 0.1, seed=2))
    ds = ReBenPatches(SAMPLE_REBEN, ("train",), label_fraction=0.3, seed=0)
    assert ds.labelled.sum() == 9 and len(ds) == 29
    with pytest.raises(ValueError, match="label fraction"):
        labelled_subset(10, 0.0, 0)


def test_bad_folder_and_split_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="metadata.parquet"):
        ReBenPatches(tmp_path)
    with pytest.raises(ValueError, match="unknown split"):
        ReBenPatches(SAMPLE_REBEN, ("val",))
