"""Sentinel-2 products of processing baseline 04.00 on add 1000 to every digital number: the
engine finds out (product name, metadata), subtracts it, says so, and warns where nothing tells
but the values look offset. On a real baseline 04.00 L2A product (Major TOM, T33NZA 2022-07-06)
the map equals the map of the same scene stored without the offset."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from core.cli import main
from core.engine import SceneRequest, run_scene
from core.engine.reflectance_offset import detect_offset, resolve_offset

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ROOT / "tests" / "data" / "major_tom_n0400" / \
    "S2A_MSIL2A_20220706T085611_N0400_R007_T33NZA_20220706T153419.tif"  # 256 px, 12 bands, offset DN


@pytest.mark.parametrize("name,offset", [
    ("S2A_MSIL2A_20220706T085611_N0400_R007_T33NZA_20220706T153419/B02.tif", 1000.0),
    ("S2B_MSIL1C_20230101T100000_N0509_R122_T33UUU_20230101T120000.SAFE/GRANULE/x/B04.jp2", 1000.0),
    ("S2A_MSIL2A_20190918T105031_N0213_R051_T30SXH_20190918T140000.tif", 0.0),
    ("S2B_MSIL2A_20200223T032739_N9999_R018_T48QUE_20230924T183543/B02.tif", None),
    ("Spain_7370579_S2Hand.tif", None),
], ids=["L2A N0400", "L1C N0509", "L2A N0213", "N9999 (harmonised)", "no product name"])
def test_the_offset_from_the_product_name(name, offset):
    assert detect_offset([f"/data/{name}"], {})[0] == offset


def test_the_offset_from_metadata_comes_first():
    assert detect_offset(["/x/S2A_MSIL2A_20190918T105031_N0213_R051_T30SXH_x.tif"], {"BOA_ADD_OFFSET": "-1000"}) \
        == (1000.0, "the input's metadata (BOA_ADD_OFFSET=-1000)")


def test_what_the_user_gives_wins():
    assert resolve_offset(0, ["/x/S2A_MSIL2A_20220706T085611_N0400_R007_T33NZA_x/B02.tif"], {}) == (0.0, None)
    assert resolve_offset(1000, ["a.tif"], {})[0] == 1000.0


@pytest.fixture(scope="module")
def copies(tmp_path_factory) -> tuple[Path, Path, Path]:
    """The product as sold (its name tells the baseline), the same reflectances stored the old way
    (DN - 1000, under a plain name), and the offset values under a plain name (nothing tells)."""
    d = tmp_path_factory.mktemp("offset")
    with rasterio.open(PRODUCT) as src:
        profile, dn, names = src.profile, src.read().astype(np.int32), src.descriptions
    out = []
    for name, values in ((PRODUCT.name, dn), ("plain-old-style.tif", np.clip(dn - 1000, 1, None)),
                         ("unnamed.tif", dn)):
        with rasterio.open(d / name, "w", **profile) as ds:
            ds.write(values.astype(np.uint16))
            for i, b in enumerate(names, 1):
                ds.set_band_description(i, b)
        out.append(d / name)
    return out[0], out[1], out[2]


def test_a_baseline_04_product_maps_like_the_same_scene_without_the_offset(copies, tmp_path):
    as_sold, plain, _ = copies
    runs = {}
    for name, path in (("as sold", as_sold), ("plain", plain)):
        res = run_scene(SceneRequest(model=str(ROOT / "resources" / "models" / "mosaic-small-ben19"), optical=str(path),
                                     window_valid_min=0.0, outputs={"probabilities": str(tmp_path / f"{name}.tif")}))
        with rasterio.open(res.outputs["probabilities"]) as ds:
            runs[name] = (ds.read().astype(int), ds.tags(), res.warnings)
    (p_sold, tags, warns), (p_plain, plain_tags, plain_warns) = runs["as sold"], runs["plain"]
    assert any("(DN - 1000) / 10000, from processing baseline 04.00 in the product name" in w for w in warns)
    assert tags["optical_offset_dn"] == "1000" and "optical_offset_dn" not in plain_tags
    assert not any("baseline" in w for w in plain_warns)
    assert np.abs(p_sold - p_plain).max() <= 1  # uint8 x 250: the same probabilities up to rounding
    assert (p_sold.argmax(0) == p_plain.argmax(0)).mean() > 0.999


def test_offset_values_that_nothing_explains_get_a_warning(copies, tmp_path, capsys):
    _, _, unnamed = copies
    code = main(["classify", "--optical", str(unnamed), "--dominant", str(tmp_path / "d.tif"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 0 and "darkest pixels are all above 1000 DN" in err and "--optical-offset 1000" in err
    code = main(["classify", "--optical", str(unnamed), "--optical-offset", "1000", "--dominant",
                 str(tmp_path / "e.tif"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 0 and "(DN - 1000) / 10000 (offset as given)" in err and "darkest" not in err
