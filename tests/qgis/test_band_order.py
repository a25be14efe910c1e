"""The dock never reads a layer in a guessed band order without saying so: the band field and a
line under it say the order is unknown, and a run asks first (no: nothing starts; yes: the run
reads exactly the confirmed list). Processing refuses such a layer with the parameter named."""
from __future__ import annotations

import glob
import shutil
from pathlib import Path

import pytest
from osgeo import gdal
from qgis import processing
from qgis.core import Qgis, QgsProcessingException, QgsRasterLayer

TIMEOUT_MS = 120_000
ROOT = Path(__file__).resolve().parents[2]
USA = sorted(glob.glob(str(ROOT / "tests" / "data" / "s2-l1c-usa" / "s2_B*.jp2")))  # B01..B12, then B8A
S2_13 = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]


def _unnamed_vrt(folder: Path, files: list[str]) -> str:
    """``gdalbuildvrt -separate`` of copies named layer_01.jp2 ...: no band says what it is."""
    copies = []
    for k, f in enumerate(files, 1):
        copies.append(str(folder / f"layer_{k:02d}.jp2"))
        shutil.copy(f, copies[-1])
    out = str(folder / "unnamed.vrt")
    gdal.BuildVRT(out, copies, separate=True, resolution="highest").FlushCache()
    return out


@pytest.fixture
def unnamed_layers(project, tmp_path):
    """(a layer in the usual 13-band order, one in file-name order: B8A last), neither named."""
    right = tmp_path / "right"
    wrong = tmp_path / "wrong"
    right.mkdir()
    wrong.mkdir()
    layers = (QgsRasterLayer(_unnamed_vrt(right, sorted(USA, key=lambda f: S2_13.index(Path(f).stem[3:]))), "right"),
              QgsRasterLayer(_unnamed_vrt(wrong, USA), "file-name order"))
    assert all(layer.isValid() for layer in layers)
    project.addMapLayers(list(layers))
    yield layers


@pytest.fixture
def dock(mosaic_plugin, qgis_iface, tmp_path):
    dock = mosaic_plugin.dock
    dock.output_dir.setFilePath(str(tmp_path / "out"))
    dock.optical_bands.clear()
    dock.sar_bands.clear()
    dock.sar_combo.setLayer(None)
    dock.extent_check.setChecked(False)
    dock.window_check.setChecked(True)
    qgis_iface.messageBar().clear_messages()
    yield dock
    dock.optical_combo.setLayer(None)
    dock.last_layers = []


def test_the_band_field_says_when_the_order_is_a_guess(dock, unnamed_layers) -> None:
    right, _ = unnamed_layers
    dock.optical_combo.setLayer(right)
    assert dock.optical_bands.placeholderText() == "order unknown: type or confirm (13 bands)"
    warning = dock.optical_band_warning
    assert not warning.isHidden() and "have no names" in warning.text() and "S2-13" in warning.text()
    dock.optical_bands.setText("S2-13")  # names typed: nothing left to confirm
    assert warning.isHidden()
    dock.optical_bands.clear()
    assert not warning.isHidden()


def test_a_run_asks_before_reading_a_guessed_order(dock, unnamed_layers, qtbot, monkeypatch, tmp_path) -> None:
    right, wrong = unnamed_layers
    asked = []
    answers = iter([False, True])
    monkeypatch.setattr(dock, "_confirm", lambda title, text: asked.append(text) or next(answers))
    dock.optical_combo.setLayer(wrong)
    assert dock.start("classify") is None and dock.task is None  # "no": nothing starts, the field is named
    assert dock.status.text() == "Not started: type the band names of 'file-name order'."
    assert "1: B01" in asked[0] and "11: B10 (unused)" in asked[0] and "13: B12" in asked[0]
    assert "Warning: the optical values do not look like" in asked[0] and "B11 above B12" in asked[0]
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
    dock.optical_combo.setLayer(right)
    task = dock.start("classify")  # "yes": the run reads the confirmed list
    assert task is not None and "looks like these bands" in asked[1]
    qtbot.waitUntil(lambda: dock.task is None, timeout=TIMEOUT_MS)
    assert task.error == "" and task.band_lists["optical"] == [b if b != "B10" else "-" for b in S2_13]


def test_processing_names_the_parameter_for_an_unnamed_stack(mosaic_plugin, unnamed_layers, tmp_path) -> None:
    right, _ = unnamed_layers
    params = {"OPTICAL": right, "DOMINANT": str(tmp_path / "d.tif")}
    with pytest.raises(QgsProcessingException, match=r"Type the band names in file order in 'Optical band names, in file order' \(OPTICAL_BANDS\)"):
        processing.run("mosaic:classify", params)
    assert not (tmp_path / "d.tif").exists()
    params["OPTICAL_BANDS"] = "S2-13"
    assert Path(processing.run("mosaic:classify", params)["DOMINANT"]).is_file()
