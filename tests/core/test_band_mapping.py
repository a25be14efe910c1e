"""Band names read from every place GDAL exposes them, a guessed order that no run takes
silently, and the check that values look like the bands they are read as.

The issue's case: the USA band files stacked with ``gdalbuildvrt -separate`` come in file-name
order (B8A last) with no band descriptions; they were read in the 13-band Sentinel-2 order and
a third of the map changed. Here every order of those files must give the same map, and an
order nobody can know is refused or warned about."""
from __future__ import annotations

import glob
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from osgeo import gdal
from rasterio.transform import from_origin

from core.cli import main
from core.engine import SceneRequest, run_scene
from core.engine.band_check import band_value_warnings, check_band_values
from core.engine.band_mapping import (
    DESCRIPTION, FILE_NAME, METADATA, ORDER, WAVELENGTH, BandOrderUnknown, band_for_wavelength, map_bands, name_bands)
from core.io.model_file import read_card

ROOT = Path(__file__).resolve().parents[2]
MODEL = str(ROOT / "resources" / "models" / "mosaic-small-ben19")
USA = sorted(glob.glob(str(ROOT / "tests" / "data" / "s2-l1c-usa" / "s2_B*.jp2")))  # file-name order: B8A last
GERMANY = sorted(glob.glob(str(ROOT / "resources" / "sample" / "germany" / "*_B*.jp2")))
SPAIN = str(ROOT / "resources" / "sample" / "spain" / "Spain_7370579_S2Hand.tif")
SPAIN_S1 = str(ROOT / "resources" / "sample" / "spain" / "Spain_7370579_S1Hand.tif")
MAJOR_TOM = glob.glob(str(ROOT / "tests" / "data" / "major_tom_n0400" / "*.tif"))[0]
S2_ORDER = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]
CARD = read_card(MODEL)
NEED, MEANS = CARD["inputs"]["s2"]["bands"], CARD["inputs"]["s2"]["mean"]

gdal.UseExceptions()


def _band(path: str) -> str:
    return Path(path).stem.split("_")[-1]


def _vrt(files: list[str], out: Path) -> str:
    """What ``gdalbuildvrt -separate`` makes: one band per file, in the order given, no descriptions."""
    gdal.BuildVRT(str(out), files, separate=True, resolution="highest").FlushCache()
    return str(out)


ORDERS = {
    "file-name order (B8A last)": lambda fs: fs,
    "Sentinel-2 order": lambda fs: sorted(fs, key=lambda f: S2_ORDER.index(_band(f))),
    "reversed": lambda fs: fs[::-1],
    "shuffled": lambda fs: [fs[i] for i in np.random.default_rng(3).permutation(len(fs))],
}


@pytest.mark.parametrize("order", list(ORDERS))
def test_vrt_of_band_files_is_named_from_its_file_names_in_any_order(tmp_path, order):
    files = ORDERS[order](USA)
    with rasterio.open(_vrt(files, tmp_path / "s2.vrt")) as src:
        assert src.descriptions == (None,) * 13
        named = name_bands(src, "s2")
        mapping = map_bands(src, "s2", NEED, None, "optical raster")
    assert named.names == [_band(f) for f in files] and set(named.sources) == {FILE_NAME}
    assert not named.order_guessed and mapping.source == "band file names"
    assert [files[i - 1] for i in mapping.indexes] == [f for b in NEED for f in USA if _band(f) == b]


def test_descriptions_come_first_and_a_disagreement_is_noted(tmp_path):
    vrt = _vrt(USA, tmp_path / "s2.vrt")
    ds = gdal.Open(vrt, gdal.GA_Update)  # descriptions that say the S2 order: wrong for bands 9-13
    for i, name in enumerate(S2_ORDER, 1):
        ds.GetRasterBand(i).SetDescription(name)
    ds = None  # written on close
    with rasterio.open(vrt) as src:
        named = name_bands(src, "s2")
    assert named.names == S2_ORDER and set(named.sources) == {DESCRIPTION}
    assert "band 13 is B12 by its band descriptions but B8A (band file names)" in named.notes


def _stack(path: Path, count: int, tags=None, ns=None, size: int = 16) -> str:
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=count, dtype="uint16",
                       crs="EPSG:32633", transform=from_origin(500000, 5800000, 10, 10)) as ds:
        ds.write(np.full((count, size, size), 1000, "uint16"))
        for i, t in enumerate(tags or [], 1):
            ds.update_tags(i, ns=ns, **t) if ns else ds.update_tags(i, **t)
    return str(path)


def test_band_metadata_and_wavelengths_name_bands(tmp_path):
    safe = _stack(tmp_path / "safe.tif", 3, [{"BANDNAME": "B4"}, {"BANDNAME": "B8A"}, {"BANDNAME": "B2"}])
    nm = _stack(tmp_path / "nm.tif", 3, [{"WAVELENGTH": "665", "WAVELENGTH_UNIT": "nm"},
                                          {"WAVELENGTH": "842", "WAVELENGTH_UNIT": "nm"},
                                          {"WAVELENGTH": "2.19", "WAVELENGTH_UNIT": "micrometers"}])
    imagery = _stack(tmp_path / "imagery.tif", 2, [{"CENTRAL_WAVELENGTH_UM": "0.865"},
                                                    {"CENTRAL_WAVELENGTH_UM": "1.61"}], ns="IMAGERY")
    sar = _stack(tmp_path / "sar.tif", 2, [{"POLARISATION": "VH"}, {"POLARISATION": "VV"}])
    expect = {safe: (["B04", "B8A", "B02"], METADATA), nm: (["B04", "B08", "B12"], WAVELENGTH),
              imagery: (["B8A", "B11"], WAVELENGTH)}
    for path, (names, source) in expect.items():
        with rasterio.open(path) as src:
            named = name_bands(src, "s2")
        assert (named.names, set(named.sources)) == (names, {source}), path
    with rasterio.open(sar) as src:
        assert name_bands(src, "s1").names == ["VH", "VV"]
    assert band_for_wavelength(1000) is None and band_for_wavelength(0.49) == "B02"


def test_a_file_that_feeds_two_bands_names_neither(tmp_path):
    two = _stack(tmp_path / "s2_B04.tif", 2)  # its name says B04, but it holds two bands
    vrt = tmp_path / "two.vrt"
    gdal.Translate(str(vrt), two, format="VRT")
    with rasterio.open(str(vrt)) as src:
        assert name_bands(src, "s2").names == ["?", "?"]
    with rasterio.open(_stack(tmp_path / "s2_B8A.tif", 1)) as src:  # a one-band file: its own name
        assert name_bands(src, "s2").names == ["B8A"]


def _unnamed_copies(tmp_path: Path, files: list[str]) -> list[str]:
    """The band files under names that say nothing (layer_01.jp2 ...), in the order given."""
    out = []
    for k, f in enumerate(files, 1):
        out.append(str(tmp_path / f"layer_{k:02d}.jp2"))
        shutil.copy(f, out[-1])
    return out


def test_an_unnamed_stack_is_a_guess_that_no_run_takes_silently(tmp_path, capsys):
    vrt = _vrt(_unnamed_copies(tmp_path, USA), tmp_path / "unnamed.vrt")
    with rasterio.open(vrt) as src:
        named = name_bands(src, "s2")
        assert named.order_guessed and set(named.sources) == {ORDER} and named.names == S2_ORDER
        with pytest.raises(BandOrderUnknown) as e:
            map_bands(src, "s2", NEED, None, "optical raster")
    assert e.value.preset() == "S2-13" and "none of its 13 bands is named" in str(e.value)
    out = tmp_path / "dom.tif"
    assert main(["classify", "--optical", vrt, "--dominant", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--optical-bands" in err and "e.g. S2-13 if that is the file's order" in err and not out.exists()


def _classify(tmp_path: Path, name: str, optical: str, bands=None) -> tuple[np.ndarray, list[str]]:
    res = run_scene(SceneRequest(model=MODEL, optical=optical, optical_bands=bands, stride=16,
                                 outputs={"probabilities": str(tmp_path / f"{name}.tif")}))
    with rasterio.open(res.outputs["probabilities"]) as ds:
        return ds.read(), res.warnings


def test_every_file_order_gives_the_same_map_and_a_wrong_list_is_loud(tmp_path):
    ref, warnings = _classify(tmp_path, "ref", _vrt(ORDERS["Sentinel-2 order"](USA), tmp_path / "ref.vrt"))
    assert not any("do not look like" in w for w in warnings)
    for order in ("file-name order (B8A last)", "shuffled"):
        probs, warnings = _classify(tmp_path, order[:4], _vrt(ORDERS[order](USA), tmp_path / f"{order[:4]}.vrt"))
        np.testing.assert_array_equal(probs, ref)
        assert not any("do not look like" in w for w in warnings)
    # the issue's case, typed: file-name order read as the S2-13 preset. The map changes and the run says why
    wrong, warnings = _classify(tmp_path, "wrong", _vrt(USA, tmp_path / "wrong.vrt"), ["S2-13"])
    given = ref[0] != 255
    assert (wrong[:, given] != ref[:, given]).any(0).mean() > 0.3
    check = [w for w in warnings if "do not look like" in w]
    assert check and "B11 above B12 on 1%" in check[0] and "B09" in check[0]


REAL = {"Spain L1C": (SPAIN, None, 0.0), "USA L1C (JPEG 2000 files)": (None, USA, 0.0),
        "Germany L1C (JPEG 2000 files)": (None, GERMANY, 0.0), "Central Africa L2A N0400": (MAJOR_TOM, None, 1000.0)}


@pytest.mark.parametrize("scene", list(REAL))
def test_real_scenes_pass_the_band_checks_and_fail_them_misread(tmp_path, scene):
    path, files, offset = REAL[scene]
    path = path or _vrt(files, tmp_path / "s2.vrt")
    with rasterio.open(path) as src:
        mapping = map_bands(src, "s2", NEED, None, "optical raster")
        assert check_band_values(src, mapping.indexes, NEED, offset, MEANS, "optical", mapping.source) == []
        # the same file read as the bands of the usual 12/13-band order, which it is not in (B8A last)
        # or, for a stack already in that order, with B11 and B12 swapped
        names = [b if b in NEED else "-" for b in name_bands(src, "s2").names]
        wrong = list(names)
        if files is None:
            i, j = names.index("B11"), names.index("B12")
            wrong[i], wrong[j] = "B12", "B11"
        else:
            wrong = [b if b in NEED else "-" for b in (S2_ORDER if src.count == 13 else NEED)]
        bad = map_bands(src, "s2", NEED, wrong, "optical raster")
        warnings = check_band_values(src, bad.indexes, NEED, offset, MEANS, "optical", bad.source)
    assert warnings and "B11 above B12" in warnings[0] and "(the band list)" in warnings[0]


def test_sar_swapped_and_reflectance_from_0_to_1_are_warned(tmp_path):
    with rasterio.open(SPAIN_S1) as src:
        assert check_band_values(src, [1, 2], ["VV", "VH"], 0.0, None, "SAR", "band descriptions") == []
        swapped = check_band_values(src, [2, 1], ["VV", "VH"], 0.0, None, "SAR", "the band list")
    assert swapped and "VV above VH on 1%" in swapped[0]
    with rasterio.open(SPAIN) as src:
        mapping = map_bands(src, "s2", NEED, None, "optical raster")
        v = np.stack([np.ravel(src.read(i)) for i in mapping.indexes]).astype(float)
    ok = v[:, (v > 0).all(0)]
    scaled = band_value_warnings(dict(zip(NEED, ok / 10000)), dict(zip(NEED, MEANS)), "optical", "band descriptions")
    assert scaled and "reflectance from 0 to 1" in scaled[0]
    assert band_value_warnings(dict(zip(NEED, ok)), dict(zip(NEED, MEANS)), "optical", "x") == []
