"""The bad-input suite: what a hostile but realistic user gets from the command line.

Each case runs ``python -m core ...`` in this process (``core.cli.main``) with the system's
temporary folder pointed at a folder of its own, and checks
- the exit status and the message the user reads (one line, no traceback),
- that no input changed (sha256 of every input file before and after),
- that nothing is left beside the outputs (no ``.NAME.<pid>.*``) or in the temporary folder.
Signals (SIGTERM, SIGINT, SIGKILL) go to real child processes: tests/core/test_signals.py.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from core.cli import main

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "resources" / "models" / "mosaic-small-ben19"
SPAIN = ROOT / "resources" / "sample" / "spain"
LABELS = ROOT / "resources" / "sample" / "labels" / "spain_polygons.geojson"


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _raster(path: Path, w: int, h: int, fill: int = 1000, nodata=None) -> Path:
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=13, dtype="uint16", crs="EPSG:32630",
                       transform=from_origin(600000, 4200000, 10, 10), nodata=nodata) as ds:
        ds.write(np.full((13, h, w), fill, np.uint16))
    return path


@pytest.fixture
def ws(tmp_path, monkeypatch):
    """A workspace: copies of the Spain inputs and the model, an output folder, a private temp folder."""
    d = tmp_path
    (d / "in").mkdir()
    (d / "out").mkdir()
    (d / "tmp").mkdir()
    for f in ("Spain_7370579_S2Hand.tif", "Spain_7370579_S1Hand.tif"):
        shutil.copy(SPAIN / f, d / "in" / f)
    for ext in (".json", ".safetensors"):
        shutil.copy(str(MODEL) + ext, d / "in" / f"model{ext}")
    shutil.copy(LABELS, d / "in" / "labels.geojson")
    monkeypatch.setattr(tempfile, "tempdir", str(d / "tmp"))
    return d


def run(ws: Path, capsys, *argv: str) -> tuple[int, str]:
    """Run the command; returns (exit status, stderr), after checking inputs and leftovers."""
    before = {p: sha(p) for p in (ws / "in").rglob("*") if p.is_file()}
    try:
        code = main([str(a).replace("{ws}", str(ws)) for a in argv])
    except SystemExit as e:  # argparse
        code = e.code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert {p: sha(p) for p in before if p.exists()} == before, "an input changed"
    assert all(p.exists() for p in before), "an input was deleted"
    left = [p.name for p in (ws / "out").iterdir() if p.name.startswith(".")] + \
        [p.name for p in (ws / "tmp").iterdir() if p.name.startswith("mosaic-")]  # (torch keeps caches there)
    assert not left, f"left behind: {left}"
    return code, err


S2 = "{ws}/in/Spain_7370579_S2Hand.tif"
S1 = "{ws}/in/Spain_7370579_S1Hand.tif"
CLASSIFY = ("classify", "--model", "{ws}/in/model", "--optical", S2, "--optical-bands", "S2-13", "--quiet")

# (case id, argv, exit status, message) for the classify command
CLASSIFY_CASES = [
    ("output is the optical input", CLASSIFY + ("--dominant", S2), 2, "is the optical raster: writing it would destroy"),
    ("output is the SAR input", CLASSIFY + ("--sar", S1, "--probabilities", S1), 2, "is the SAR raster"),
    ("output is the model card", CLASSIFY + ("--dominant", "{ws}/in/model.json"), 2, "is the model's card"),
    ("output is the model weights", CLASSIFY + ("--dominant", "{ws}/in/model.safetensors"), 2, "is the model's weights"),
    ("block size 0", CLASSIFY + ("--block-size", "0", "--dominant", "{ws}/out/d.tif"), 2, "block_size must be at least 128"),
    ("negative block size", CLASSIFY + ("--block-size", "-64", "--dominant", "{ws}/out/d.tif"), 2, "at least 128"),
    ("negative halo", CLASSIFY + ("--halo", "-1", "--dominant", "{ws}/out/d.tif"), 2, "halo must be >= 0"),
    ("zero threads", CLASSIFY + ("--threads", "0", "--dominant", "{ws}/out/d.tif"), 2, "--threads: must be at least 1"),
    ("zero batch", CLASSIFY + ("--batch-size", "0", "--dominant", "{ws}/out/d.tif"), 2, "--batch-size: must be at least 1"),
    ("stride 0", CLASSIFY + ("--stride", "0", "--dominant", "{ws}/out/d.tif"), 2, "stride must be >= 1"),
    ("window share above 1", CLASSIFY + ("--window-valid-min", "2", "--dominant", "{ws}/out/d.tif"), 2,
     "window_valid_min is a share"),
    ("one cluster", CLASSIFY + ("--k", "1", "--clusters", "{ws}/out/c.tif"), 2, "clusters must be between 2 and 254"),
    ("two outputs, one path", CLASSIFY + ("--dominant", "{ws}/out/d.tif", "--uncertainty", "{ws}/out/d.tif"), 2,
     "two outputs have the same path"),
    ("output folder missing", CLASSIFY + ("--dominant", "{ws}/nowhere/d.tif"), 2, "does not exist"),
    ("no output asked", CLASSIFY, 2, "ask for at least one output"),
    ("unknown mode", CLASSIFY + ("--mode", "fast", "--dominant", "{ws}/out/d.tif"), 2, "invalid choice"),
    ("optical file missing", ("classify", "--optical", "{ws}/in/nope.tif", "--dominant", "{ws}/out/d.tif", "--quiet"), 2,
     "not found"),
    ("model missing", ("classify", "--model", "{ws}/in/nope", "--optical", S2, "--dominant", "{ws}/out/d.tif",
                       "--quiet"), 2, "not found"),
    ("unknown band names", ("classify", "--model", "{ws}/in/model", "--optical", S2, "--optical-bands", "B99",
                            "--dominant", "{ws}/out/d.tif", "--quiet"), 2, "B99"),
    ("extent outside the scene", CLASSIFY + ("--extent", "0", "0", "10", "10", "--extent-crs", "EPSG:32630",
                                             "--dominant", "{ws}/out/d.tif"), 2, "extent"),
    ("fine outputs, no pixel head", CLASSIFY + ("--fine-classes", "{ws}/out/f.tif"), 2, "has no pixel head"),
]


@pytest.mark.parametrize("argv,code,message", [c[1:] for c in CLASSIFY_CASES], ids=[c[0] for c in CLASSIFY_CASES])
def test_classify_refuses(ws, capsys, argv, code, message):
    got, err = run(ws, capsys, *argv)
    assert got == code and message in err, err
    assert not list((ws / "out").iterdir())


def test_output_named_inside_a_vrt_is_refused(ws, capsys):
    from osgeo import gdal

    gdal.BuildVRT(str(ws / "in" / "s2.vrt"), [str(ws / "in" / "Spain_7370579_S2Hand.tif")])
    code, err = run(ws, capsys, "classify", "--model", "{ws}/in/model", "--optical", "{ws}/in/s2.vrt",
                    "--optical-bands", "S2-13", "--dominant", S2, "--quiet")
    assert code == 2 and "which the optical raster" in err and "s2.vrt reads" in err


def test_input_that_is_not_a_raster(ws, capsys):
    (ws / "in" / "notes.tif").write_text("not a raster")
    code, err = run(ws, capsys, "classify", "--optical", "{ws}/in/notes.tif", "--dominant", "{ws}/out/d.tif", "--quiet")
    assert code == 2 and "cannot be read by GDAL" in err


@pytest.mark.parametrize("edit,message", [
    (lambda c: c["architecture"].update(classes=c["architecture"]["classes"][:5]), "does not fit its card"),
    (lambda c: c["architecture"].update(s2_bands=c["architecture"]["s2_bands"][:4]), "does not fit its card"),
    (lambda c: c.pop("architecture"), "does not describe a model"),
], ids=["classes cut", "bands cut", "no architecture"])
def test_model_card_that_does_not_fit_its_weights(ws, capsys, edit, message):
    card = json.loads((ws / "in" / "model.json").read_text())
    card.pop("sha256")
    edit(card)
    (ws / "in" / "model.json").write_text(json.dumps(card))
    code, err = run(ws, capsys, *CLASSIFY, "--dominant", "{ws}/out/d.tif")
    assert code == 2 and message in err, err


def test_model_card_that_is_not_json(ws, capsys):
    (ws / "in" / "model.json").write_text("{ not json")
    code, err = run(ws, capsys, *CLASSIFY, "--dominant", "{ws}/out/d.tif")
    assert code == 2 and "is not a MoSAiC model card" in err


def test_all_no_data_input_says_nothing_was_classified(ws, capsys):
    _raster(ws / "in" / "empty.tif", 256, 256, fill=0, nodata=0)
    code, err = run(ws, capsys, "classify", "--model", "{ws}/in/model", "--optical", "{ws}/in/empty.tif",
                    "--optical-bands", "S2-13", "--dominant", "{ws}/out/d.tif", "--quiet")
    assert code == 0 and "no window output cells were classified (all 256 are no data)" in err


def test_one_pixel_scene_says_nothing_was_classified(ws, capsys):
    _raster(ws / "in" / "one.tif", 1, 1)
    code, err = run(ws, capsys, "classify", "--model", "{ws}/in/model", "--optical", "{ws}/in/one.tif",
                    "--optical-bands", "S2-13", "--dominant", "{ws}/out/d.tif", "--quiet")
    assert code == 0 and "no window output cells were classified" in err and "too small" in err


def test_a_run_with_most_cells_classified_does_not_warn(ws, capsys):
    code, err = run(ws, capsys, *CLASSIFY, "--dominant", "{ws}/out/d.tif")
    assert code == 0, err
    with rasterio.open(ws / "out" / "d.tif") as ds:
        given = int((ds.read(1) != 255).sum())
    assert ds.width * ds.height / 2 < given < ds.width * ds.height and "were classified" not in err


def test_what_a_killed_run_left_is_deleted_by_the_next(ws, capsys):
    import subprocess

    dead = subprocess.Popen(["true"])
    dead.wait()
    pid = dead.pid
    junk = [ws / "out" / f".p.tif.{pid}.tmp.tif", ws / "out" / f".d.tif.{pid}.tmp.tif",
            ws / "out" / f".d.tif.{pid}.s2.features", ws / "out" / f".p.tif.{pid}.staged.tif"]
    for j in junk:
        j.write_bytes(b"x" * 1000)
    folder = ws / "tmp" / f"mosaic-scene-{pid}-abc"
    folder.mkdir()
    (folder / "s2.vrt").write_text("x")
    code, err = run(ws, capsys, *CLASSIFY, "--dominant", "{ws}/out/d.tif", "--probabilities", "{ws}/out/p.tif")
    assert code == 0 and "deleted 4 temporary file(s)" in err
    assert sorted(p.name for p in (ws / "out").iterdir()) == ["d.tif", "p.tif"]


def test_a_living_runs_temporaries_are_kept(ws, capsys):
    import os

    mine = ws / "out" / f".d.tif.{os.getppid()}.tmp.tif"  # the parent process is alive
    mine.write_bytes(b"x")
    try:
        main([a.replace("{ws}", str(ws)) for a in CLASSIFY + ("--dominant", "{ws}/out/d.tif")])
        assert mine.exists()
    finally:
        mine.unlink()


LABELLED = ("finetune", "--model", "{ws}/in/model", "--optical", S2, "--optical-bands", "S2-13", "--quiet")


def _labels(ws: Path, rename: dict[str, str]) -> str:
    gj = json.loads((ws / "in" / "labels.geojson").read_text())
    for f in gj["features"]:
        f["properties"]["labels"] = rename.get(f["properties"]["labels"], f["properties"]["labels"])
    (ws / "in" / "edited.geojson").write_text(json.dumps(gj))
    return "{ws}/in/edited.geojson"


FINETUNE_CASES = [
    ("out is the base model", lambda ws: LABELLED + ("--labels", "{ws}/in/labels.geojson", "--out", "{ws}/in/model"),
     2, "is the base model's weights"),
    ("label with a typo", lambda ws: LABELLED + ("--labels", _labels(ws, {"Arable land": "Arable lnd"}), "--out",
                                                 "{ws}/out/m"), 2, "'Arable lnd' (polygon(s)"),
    ("label in the plural", lambda ws: LABELLED + ("--labels", _labels(ws, {"Urban fabric": "Urban fabrics"}),
                                                     "--out", "{ws}/out/m"), 2, "looks like 'Urban fabric'"),
    ("labels file missing", lambda ws: LABELLED + ("--labels", "{ws}/in/nope.gpkg", "--out", "{ws}/out/m"), 2,
     "not found"),
    ("label field missing", lambda ws: LABELLED + ("--labels", "{ws}/in/labels.geojson", "--label-field", "class",
                                                   "--out", "{ws}/out/m"), 2, "class"),
    ("zero epochs", lambda ws: LABELLED + ("--labels", "{ws}/in/labels.geojson", "--epochs", "0", "--out",
                                           "{ws}/out/m"), 2, "--epochs: must be at least 1"),
    ("out folder missing", lambda ws: LABELLED + ("--labels", "{ws}/in/labels.geojson", "--out", "{ws}/nowhere/m"),
     2, "does not exist"),
]


@pytest.mark.parametrize("make,code,message", [c[1:] for c in FINETUNE_CASES], ids=[c[0] for c in FINETUNE_CASES])
def test_finetune_refuses(ws, capsys, make, code, message):
    got, err = run(ws, capsys, *make(ws))
    assert got == code and message in err, err
    assert not list((ws / "out").iterdir())


@pytest.mark.parametrize("argv,message", [
    (("train", "--batch-size", "0"), "--batch-size: must be at least 1"),
    (("train", "--epochs", "-1"), "--epochs: must be at least 1"),
    (("train", "--batch-size", "many"), "'many' is not a whole number"),
], ids=["train batch 0", "train epochs -1", "train batch not a number"])
def test_train_refuses(ws, capsys, argv, message):
    code, err = run(ws, capsys, *argv, "--out", "{ws}/out/run")
    assert code == 2 and message in err


def test_pretrained_weights_that_are_pickled_objects(ws, capsys):
    import torch

    torch.save(torch.nn.Linear(2, 2), ws / "in" / "whole-model.pt")  # a pickled module, not a state dict
    code, err = run(ws, capsys, "train", "--pretrained-s2", "{ws}/in/whole-model.pt", "--out", "{ws}/out/run")
    assert code == 2 and "is not a plain state dict" in err and "nothing was run" in err
    assert not (ws / "out" / "run").exists()


def test_reben_patch_missing_a_band_file(ws, capsys):
    shutil.copytree(ROOT / "resources" / "sample" / "reben", ws / "in" / "reben")
    band = sorted((ws / "in" / "reben" / "BigEarthNet-S2").rglob("*_B04.tif"))[0]
    band.unlink()
    patch = band.name[: -len("_B04.tif")]
    for verb in (("train", "--epochs", "1", "--out", "{ws}/out/run"),
                 ("evaluate", "--model", "{ws}/in/model", "--out", "{ws}/out/eval.json")):
        code, err = run(ws, capsys, *verb, "--data", "{ws}/in/reben", "--splits", "train", "validation", "test",
                        "--device", "cpu")
        assert code == 2 and f"reBEN patch {patch} has no B04 band file" in err, err


@pytest.mark.parametrize("lat,crs", [(85.0, "EPSG:32661"), (-82.0, "EPSG:32761"), (60.0, "EPSG:32633")],
                         ids=["above 84 N: UPS North", "below 80 S: UPS South", "60 N: UTM"])
def test_polar_scenes_are_put_on_polar_stereographic(ws, capsys, lat, crs):
    """UTM is not defined north of 84 N and south of 80 S: the grid there is UPS, and the run says so."""
    path = ws / "in" / "polar.tif"
    with rasterio.open(path, "w", driver="GTiff", width=64, height=64, count=13, dtype="uint16", crs="EPSG:4326",
                       transform=from_origin(15.0, lat + 0.01, 0.0005, 0.0001)) as ds:
        ds.write(np.full((13, 64, 64), 1000, np.uint16))
    code, err = run(ws, capsys, "classify", "--model", "{ws}/in/model", "--optical", str(path), "--optical-bands",
                    "S2-13", "--dominant", "{ws}/out/d.tif", "--quiet")
    assert code == 0 and f"grid in {crs}" in err, err
    with rasterio.open(ws / "out" / "d.tif") as ds:
        assert ds.crs.to_string() == crs


def test_a_full_disk_midway_is_one_line_and_leaves_nothing(ws, capsys, monkeypatch):
    """The disk fills up after the free-space check passed (another program wrote meanwhile)."""
    import errno

    from core.engine import writer

    def full(self, arr, row0, col0):
        raise OSError(errno.ENOSPC, "No space left on device", str(self.tmp))

    monkeypatch.setattr(writer.OutputRaster, "write", full)
    (ws / "out" / "d.tif").write_bytes(b"an earlier output")
    code, err = run(ws, capsys, *CLASSIFY, "--dominant", "{ws}/out/d.tif")
    assert code == 1 and err.strip().splitlines()[-1].startswith("error: No space left on device: ")
    assert (ws / "out" / "d.tif").read_bytes() == b"an earlier output"


@pytest.mark.parametrize("x0", [179.98, -180.02], ids=["from 179.98 E", "from 180.02 W"])
def test_a_scene_across_the_antimeridian_keeps_every_column(ws, capsys, x0):
    """The Spain S2 moved across 180 degrees: as many cells classified as where it really is."""
    from rasterio.transform import Affine

    src = ws / "in" / "Spain_7370579_S2Hand.tif"
    with rasterio.open(src) as s:
        profile, values, t = s.profile, s.read(), s.transform
    profile["transform"] = Affine(t.a, t.b, x0, t.d, t.e, t.f)
    with rasterio.open(ws / "in" / "moved.tif", "w", **profile) as d:
        d.write(values)
    given = {}
    for name, path in (("real", src), ("moved", ws / "in" / "moved.tif")):
        code, err = run(ws, capsys, "classify", "--model", "{ws}/in/model", "--optical", str(path), "--optical-bands",
                        "S2-13", "--window-valid-min", "0", "--dominant", f"{{ws}}/out/{name}.tif", "--quiet")
        assert code == 0, err
        with rasterio.open(ws / "out" / f"{name}.tif") as ds:
            d = ds.read(1)
        given[name] = int((d != 255).sum())
        if name == "moved":
            assert not (d == 255).all(0).any(), "a column of the scene came out empty"
    assert abs(given["moved"] - given["real"]) <= 0.02 * given["real"]


def test_a_read_only_output_folder(ws, capsys, monkeypatch):
    """(As root every folder is writable, so the refusal is simulated where the check asks.)"""
    import os

    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if mode == os.W_OK and str(p) == str(ws / "out")
                        else real(p, mode))
    code, err = run(ws, capsys, *CLASSIFY, "--dominant", "{ws}/out/d.tif")
    assert code == 2 and f"output folder {ws / 'out'} is not writable: choose another folder" in err
    code, err = run(ws, capsys, *LABELLED, "--labels", "{ws}/in/labels.geojson", "--out", "{ws}/out/m")
    assert code == 2 and "is not writable" in err
