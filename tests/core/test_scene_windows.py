"""Unlabelled training windows read as the scene engine reads a scene: bands by name from a
raster or a folder of band files, the baseline 04.00 offset subtracted, the level kept
(real Major-TOM and SSL4EO-S12 products of ../shared/data, and the bundled Spain scene)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from core.data.bands import S2_BANDS
from core.data.scene_windows import SceneWindows, scene_bands

ROOT = Path(__file__).resolve().parents[2]
UNLABELLED = ROOT.parent / "shared" / "data" / "unlabelled"
SPAIN = ROOT / "resources" / "sample" / "spain"
needs_data = pytest.mark.skipif(not UNLABELLED.is_dir(), reason="../shared/data/unlabelled is not here")


@needs_data
def test_band_file_folders_give_bands_by_name_offset_and_level(tmp_path):
    n0400 = next(UNLABELLED.glob("major-tom/S2L2A/*/*/*_N0400_*"))
    b = scene_bands(n0400, "s2", str(tmp_path))
    assert (b.offset, b.level) == (1000.0, "L2A") and "04.00" in b.note
    with rasterio.open(b.path) as src:  # each model band read from the file of that name
        assert [Path(src.files[i]).stem for i in b.indexes] == list(S2_BANDS)
    harmonised = next(UNLABELLED.glob("major-tom/S2L2A/*/*/*_N9999_*"))
    assert scene_bands(harmonised, "s2", str(tmp_path)).offset == 0.0  # N9999: nothing tells
    l1c = next(UNLABELLED.glob("ssl4eo-s12/s2c/*/*"))  # 13 bands, B1.tif ..., baseline in metadata.json
    assert (scene_bands(l1c, "s2", str(tmp_path)).level, scene_bands(l1c, "s2", str(tmp_path)).offset) == ("L1C", 0.0)
    s1 = scene_bands(next(UNLABELLED.glob("ssl4eo-s12/s1/*/*")), "s1", str(tmp_path))
    with rasterio.open(s1.path) as src:
        assert [Path(src.files[i]).stem for i in s1.indexes] == ["VV", "VH"]


def test_a_folder_without_a_band_says_which(tmp_path):
    folder = tmp_path / "bands"
    folder.mkdir()
    with rasterio.open(SPAIN / "Spain_7370579_S2Hand.tif") as src:
        profile = {**src.profile, "count": 1}
        for i, name in enumerate(["B02", "B03", "B04"], start=2):
            with rasterio.open(folder / f"{name}.tif", "w", **profile) as dst:
                dst.write(src.read(i), 1)
    with pytest.raises(ValueError, match="no band file for B01, B05"):
        scene_bands(folder, "s2", str(tmp_path))


@needs_data
def test_ssl4eo_windows_and_the_offset_applied(tmp_path):
    s2 = next(UNLABELLED.glob("ssl4eo-s12/s2a/*/*"))
    s1 = next(UNLABELLED.glob("ssl4eo-s12/s1/*/*"))
    w = SceneWindows(s2, s1)
    assert len(w) >= 4 and w.level == "L2A" and w[0]["s2"].shape == (12, 120, 120)
    assert all(np.isfinite(w[i]["s2"].numpy()).all() and np.isfinite(w[i]["s1"].numpy()).all() for i in range(len(w)))


def test_spain_reads_as_before_and_a_baseline_04_product_is_shifted(tmp_path):
    w = SceneWindows(SPAIN / "Spain_7370579_S2Hand.tif", SPAIN / "Spain_7370579_S1Hand.tif")
    assert len(w) == 35 and w.level == "L1C" and w.offset == 0.0
    # the same file inside a baseline 04.00 product's folder: 1000 DN lower, band by band
    product = tmp_path / "S2A_MSIL1C_20220706T085611_N0400_R007_T30SXH_20220706T153419"
    product.mkdir()
    (product / "s2.tif").write_bytes((SPAIN / "Spain_7370579_S2Hand.tif").read_bytes())
    shifted = SceneWindows(product / "s2.tif", SPAIN / "Spain_7370579_S1Hand.tif")
    assert shifted.offset == 1000.0 and len(shifted) == len(w)
    from core.data.bands import S2_STD

    step = (w[0]["s2"] - shifted[0]["s2"]).flatten(1).median(dim=1).values.numpy()  # no-data is 0 in both
    np.testing.assert_allclose(step, 1000.0 / np.array(S2_STD), rtol=1e-4)


def test_an_optical_only_scene_trains_its_optical_stream_and_leaves_sar_alone(tmp_path):
    import torch

    from core.data.reben import ReBenPatches
    from core.data.scene_windows import PooledPatches
    from core.models.mosaic import ModelConfig, MosaicModel
    from core.paths import SAMPLE_REBEN
    from core.train.config import TrainConfig
    from core.train.loop import train

    w = SceneWindows(SPAIN / "Spain_7370579_S2Hand.tif", None)
    assert not w.has_s1 and len(w) == 35 and not bool(w[0]["has_s1"])
    # the SAR encoder sees only the samples that have SAR: its BatchNorm statistics are those of them
    torch.manual_seed(0)
    model = MosaicModel(ModelConfig.preset("small")).train()
    x2, x1 = torch.randn(6, 12, 64, 64), torch.randn(6, 2, 64, 64)
    has = {"s2": torch.ones(6, dtype=torch.bool), "s1": torch.tensor([True, True, False, True, False, False])}
    feats = model.features(x2, x1, has)
    assert (feats["s1"][~has["s1"]] == 0).all() and (feats["s1"][has["s1"]] != 0).any()
    torch.manual_seed(0)  # the same initial weights
    ref = MosaicModel(ModelConfig.preset("small")).train()
    ref.features(None, x1[has["s1"]])
    bn = lambda m: m.encoders["s1"].bn1.running_mean  # noqa: E731
    assert torch.allclose(bn(model), bn(ref))
    # a short run over the reBEN sample plus the optical-only windows: every term finite
    pool = PooledPatches([ReBenPatches(str(SAMPLE_REBEN), ("train",)), w])
    cfg = TrainConfig(data=str(SAMPLE_REBEN), out=str(tmp_path), epochs=1, batch_size=16, seed=0, device="cpu",
                      progress=False)
    res = train(cfg, pool)
    assert all(np.isfinite(v) for h in res.history for k, v in h.items() if k != "epoch")
