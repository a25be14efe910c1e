"""Fine (per-pixel) maps from polygons on the real Spain S1+S2 scene: fine-tuning writes a model with
a pixel head, the engine's fine outputs are that head's answer pixel by pixel (the same numbers as
its training path), in every block layout, and every misuse is a clear error."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from core.engine import Cancelled, SceneRequest, run_scene
from core.engine import windows as W
from core.fewshot import FinetuneConfig, finetune_from_polygons
from core.fewshot.label_file import read_label_file
from core.fewshot.pixel_training import predict_pixels
from core.fewshot.pixels import PixelSet, polygon_pixels, tile_hypercolumns
from core.fewshot.scene import open_scene
from core.io.model_file import load_model, read_card

ROOT = Path(__file__).resolve().parents[2]
MODEL = str(ROOT / "resources" / "models" / "mosaic-small-ben19")
SPAIN = ROOT / "resources" / "sample" / "spain"
S2 = str(SPAIN / "Spain_7370579_S2Hand.tif")
S1 = str(SPAIN / "Spain_7370579_S1Hand.tif")
LABELS = ROOT / "resources" / "sample" / "labels" / "spain_polygons.geojson"
FINE = ("fine_classes", "fine_probabilities", "fine_uncertainty")
FAST = dict(epochs=2, windows_per_polygon=2, unlabelled=8, folds=3, pixel_steps=80, cached_views=2)


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    polygons, crs = read_label_file(LABELS)
    ids = {f["properties"]["id"]: f["properties"]["quick"] for f in json.loads(LABELS.read_text())["features"]}
    quick = [p for p, q in zip(polygons, ids.values()) if q]
    out = tmp_path_factory.mktemp("tuned") / "spain-quick"
    res = finetune_from_polygons(MODEL, quick, crs, S2, S1, out, FinetuneConfig(**FAST), optical_bands="S2-13")
    return res, quick, crs


def test_finetuning_writes_a_pixel_head_and_its_honest_validation(tuned):
    res, quick, _ = tuned
    card = read_card(res.card_path)
    assert card["format_version"] == 2 and card["architecture"]["pixel_levels"] == 1
    assert [c["name"] for c in card["pixel_classes"]] == list(res.pixel_classes)
    assert set(res.pixel_classes) == {"Flood water", "Urban fabric", "Arable land", "Permanent crops"}
    model, _ = load_model(res.card_path)
    assert model.pixel_head is not None and model.cfg.pixel_modalities == ("s2", "s1")
    pv = card["metrics"]["pixel_cross_validation"]
    assert pv["polygons"] == len(quick) and pv["folds"] == 3
    for c, v in pv["per_class"].items():  # 2-3 quick polygons a class: each judged, with its counts
        assert v["polygons"] >= 2 and v["judged"] and 0 <= v["f1"] <= 1
    assert pv["accuracy"] > 0.8  # measured 0.99: flood water, towns, orchards and fields are far apart
    assert Path(res.report_html).is_file() and Path(res.report_png).is_file()
    assert "cross-validation" in res.summary()


def test_fine_outputs_are_the_pixel_heads_answer(tuned, tmp_path):
    res, quick, crs = tuned
    outs = {k: str(tmp_path / f"{k}.tif") for k in FINE}
    run = run_scene(SceneRequest(model=res.card_path, optical=S2, sar=S1, optical_bands=["S2-13"], outputs=outs))
    with rasterio.open(outs["fine_probabilities"]) as ds:
        p = ds.read()
        assert ds.descriptions == tuple(res.pixel_classes) and ds.scales[0] == pytest.approx(0.004)
        assert ds.res == (10.0, 10.0) and (ds.width, ds.height) == (417, 521)  # the 10 m reference grid
    with rasterio.open(outs["fine_classes"]) as ds:
        c = ds.read(1)
        tags = ds.tags()
        assert [tags[f"class_{i}"] for i in range(4)] == list(res.pixel_classes)
        assert set(map(int, tags["values"].split(","))) == set(np.unique(c)) - {255}
        assert len(ds.colormap(1)) >= 4
    with rasterio.open(outs["fine_uncertainty"]) as ds:
        u = ds.read(1)
    valid = c != 255
    assert 0.9 < valid.mean() < 1.0  # all but the corners outside the rotated-in footprint
    assert (p[:, ~valid] == 255).all() and (u[~valid] == 255).all()
    assert np.abs(p[:, valid].astype(int).sum(0) - 250).max() <= 3  # softmax, rounded per class
    assert (c[valid] == p[:, valid].argmax(0)).mean() > 0.99  # ties after rounding aside
    assert (u[valid] <= 250).all() and run.mode == "dense"
    # the engine's answer = the pixel head on the hypercolumns its training reads, at the engine's lattice
    model, card = load_model(res.card_path)
    scene = open_scene(card, S2, S1, "S2-13")
    try:
        from rasterio.warp import transform_geom
        pix = np.concatenate([polygon_pixels(transform_geom(crs, scene.grid.crs, q.geometry), scene.grid.transform,
                                             scene.grid.height, scene.grid.width) for q in quick])
        phase = W.patch_origin(0, 16, 120) % 16  # the lattice of a run at the default 16 px stride
        feats, present = tile_hypercolumns(model, scene, pix, phase, 1)
    finally:
        scene.close()
    k = len(res.pixel_classes)
    ps = PixelSet(feats, present, np.zeros((len(pix), k), np.float32), np.zeros(len(pix), int), res.pixel_classes)
    want = predict_pixels(model.pixel_head, ps)
    got = p[:, pix[:, 0], pix[:, 1]].T / 250.0
    # uint8 rounding (0.002), BatchNorm folding; with torch 2.6 and GDAL 3.10 (Debian 13) up to 0.0126
    assert np.abs(got - want).max() < 0.015


def test_fine_outputs_do_not_depend_on_the_block_layout(tuned, tmp_path):
    res = tuned[0]
    got = {}
    for block in (128, 2048):
        out = tmp_path / f"c{block}.tif"
        run_scene(SceneRequest(model=res.card_path, optical=S2, sar=S1, optical_bands=["S2-13"], block_size=block,
                               outputs={"fine_classes": str(out), "dominant": str(tmp_path / f"d{block}.tif")}))
        with rasterio.open(out) as ds:
            got[block] = ds.read(1)
    assert ((got[128] == 255) == (got[2048] == 255)).all()  # every pixel written once, by one block
    # warped inputs read per block: 99.85 % identical with GDAL 3.10's warper (Debian 13), more on 3.6
    assert (got[128] == got[2048]).mean() > 0.998


def test_cancel_is_seen_inside_a_block(tuned, tmp_path):
    """One block covers the scene: Cancel is polled before each encoder and each strip of the pixel
    head, not only between blocks, and a cancel there leaves nothing behind."""
    res = tuned[0]
    req = dict(model=res.card_path, optical=S2, sar=S1, optical_bands=["S2-13"], block_size=2048)
    polls = {}
    for name, outputs in (("window", {"dominant": "d.tif"}), ("fine", {"fine_classes": "f.tif"})):
        calls = []
        run = run_scene(SceneRequest(**req, outputs={k: str(tmp_path / v) for k, v in outputs.items()}),
                        is_cancelled=lambda: calls.append(1) and False)
        polls[name] = len(calls)
    with rasterio.open(run.outputs["fine_classes"]) as ds:
        strips = -(-ds.height // 128)
    assert polls["fine"] >= polls["window"] + strips - 1  # one poll per strip (an encoder's poll may be shared)
    out = tmp_path / "cancelled"
    out.mkdir()
    calls = []
    with pytest.raises(Cancelled):
        run_scene(SceneRequest(**req, outputs={"fine_classes": str(out / "f.tif"), "dominant": str(out / "d.tif")}),
                  is_cancelled=lambda: calls.append(1) or len(calls) >= polls["fine"] - 1)
    assert list(out.iterdir()) == []


def test_fine_outputs_with_one_input_missing(tuned, tmp_path):
    """The head was trained with modality dropout: optical alone still maps; a head without SAR
    cannot map from SAR alone, and says so."""
    res = tuned[0]
    run = run_scene(SceneRequest(model=res.card_path, optical=S2, optical_bands=["S2-13"],
                                 outputs={"fine_classes": str(tmp_path / "o.tif")}))
    with rasterio.open(run.outputs["fine_classes"]) as ds:
        assert (ds.read(1) != 255).mean() > 0.9
    model, card = load_model(res.card_path)
    head = model.make_pixel_head(model.cfg.pixel_classes, ("s2",), model.cfg.pixel_hidden, 1)
    model.attach_pixel_head(head, model.cfg.pixel_classes, ("s2",), model.cfg.pixel_hidden, 1)
    from core.io.model_file import save_model
    save_model(model, tmp_path / "s2only", card)
    with pytest.raises(ValueError, match="pixel head was trained on the optical input"):
        run_scene(SceneRequest(model=str(tmp_path / "s2only"), sar=S1, outputs={"fine_classes": str(tmp_path / "x.tif")}))
    run = run_scene(SceneRequest(model=str(tmp_path / "s2only"), optical=S2, sar=S1, optical_bands=["S2-13"],
                                 outputs={"fine_classes": str(tmp_path / "y.tif")}))
    assert any("not used by the fine outputs" in w for w in run.warnings)


def test_fine_outputs_need_a_pixel_head_and_dense_mode(tuned, tmp_path):
    with pytest.raises(ValueError, match="no pixel head"):
        run_scene(SceneRequest(model=MODEL, optical=S2, optical_bands=["S2-13"],
                               outputs={"fine_classes": str(tmp_path / "f.tif")}))
    with pytest.raises(ValueError, match="dense"):
        run_scene(SceneRequest(model=tuned[0].card_path, optical=S2, optical_bands=["S2-13"], mode="sliding",
                               outputs={"fine_classes": str(tmp_path / "f.tif")}))
    assert not list(tmp_path.iterdir())


def test_cli_finetune_then_classify(tmp_path, capsys):
    """``python -m core finetune`` from a GeoJSON, then ``classify --fine-classes`` with the new model."""
    from core.cli import main

    polygons = json.loads(LABELS.read_text())
    keep = [f for f in polygons["features"] if f["properties"]["id"] in (1, 4, 16, 19, 24, 27, 31)]  # 1 orchard
    labels = tmp_path / "few.geojson"
    labels.write_text(json.dumps({"type": "FeatureCollection", "features": keep}))
    rc = main(["finetune", "--optical", S2, "--optical-bands", "S2-13", "--sar", S1, "--labels", str(labels),
               "--epochs", "2", "--windows-per-polygon", "2", "--unlabelled", "8", "--folds", "2",
               "--out", str(tmp_path / "m"), "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0 and (tmp_path / "m.safetensors").is_file() and (tmp_path / "m.report.html").is_file()
    assert "Permanent crops: 1 polygons" in out and "too few to judge" in out  # one orchard polygon
    rc = main(["classify", "--model", str(tmp_path / "m"), "--optical", S2, "--optical-bands", "S2-13", "--sar", S1,
               "--fine-classes", str(tmp_path / "f.tif"), "--quiet"])
    assert rc == 0
    with rasterio.open(tmp_path / "f.tif") as ds:
        assert ds.tags()["mosaic_output"] == "fine_classes" and ds.width == 417
    assert main(["classify", "--optical", S2, "--optical-bands", "S2-13", "--fine-classes",
                 str(tmp_path / "g.tif"), "--quiet"]) == 2
    assert "no pixel head" in capsys.readouterr().err


def test_pixel_head_is_loaded_as_saved(tuned):
    res = tuned[0]
    a, _ = load_model(res.card_path)
    x = {m: torch.randn(5, sum(d)) for m, d in a.pixel_head.level_dims.items()}
    with torch.no_grad():
        torch.testing.assert_close(a.pixel_head(x), res.model.pixel_head(x))
