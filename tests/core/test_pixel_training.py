"""The pixel head's training on hypercolumns, its honest scores, the cached window-head training,
label files and the window-validity rule: small exact cases."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from core.engine import windows as W
from core.fewshot.cached_training import cached_view_features, train_heads_cached
from core.fewshot.label_file import read_label_file
from core.fewshot.pixel_training import (
    PixelHeadConfig,
    cross_validate,
    fit_pixel_head,
    partial_label_nll,
    pixel_scores,
    polygon_folds,
    predict_pixels,
    sample_weights,
)
from core.fewshot.pixels import PixelSet
from core.losses import LossWeights
from core.models.mosaic import ModelConfig, MosaicModel


def _pixels(polys_per_class=(3, 3, 1), n=40, seed=0, dims=(3, 4)) -> PixelSet:
    """Two-cluster-per-class synthetic hypercolumns: class k's pixels near 3k in the 'bands' part."""
    rng = np.random.default_rng(seed)
    feats, labels, owner = [], [], []
    q = 0
    for k, npoly in enumerate(polys_per_class):
        for _ in range(npoly):
            size = n * (q % 3 + 1)  # polygons of different sizes
            f = rng.normal(0, 0.5, (size, sum(dims))).astype(np.float32)
            f[:, : dims[0]] += 3 * k
            feats.append(f)
            y = np.zeros((size, len(polys_per_class)), np.float32)
            y[:, k] = 1
            labels.append(y)
            owner.append(np.full(size, q))
            q += 1
    f = np.concatenate(feats)
    return PixelSet({"s2": f}, {"s2": np.ones(len(f), bool)}, np.concatenate(labels), np.concatenate(owner),
                    tuple(f"c{k}" for k in range(len(polys_per_class))))


def test_weights_balance_classes_then_polygons():
    ps = _pixels((3, 1))
    w = sample_weights(ps)
    assert w.sum() == pytest.approx(1.0)
    per_class = [w[ps.labels[:, k] > 0].sum() for k in range(2)]
    assert per_class == pytest.approx([0.5, 0.5])
    per_poly = [w[ps.polygon == q].sum() for q in range(3)]  # class 0's polygons, sizes 40/80/120 px
    assert per_poly == pytest.approx([1 / 6] * 3)


def test_partial_labels_reward_any_allowed_class():
    logits = torch.tensor([[4.0, 0.0, 0.0], [0.0, 4.0, 0.0]])
    both = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]])  # 'Arable land; Orchards': either is right
    third = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    assert partial_label_nll(logits, both) < 0.05 < partial_label_nll(logits, third)


def test_fitted_head_takes_raw_features_and_separates_classes():
    ps = _pixels((3, 3))
    head = fit_pixel_head(ps, {"s2": (3, 4)}, (2,), PixelHeadConfig(hidden=8, steps=150, seed=0))
    probs = predict_pixels(head, ps)
    assert (probs.argmax(1) == ps.labels.argmax(1)).mean() > 0.98  # standardisation folded into the weights
    with torch.no_grad():  # the folded head is the plain linear map of raw features
        x = torch.from_numpy(ps.feats["s2"][:5])
        want = head.out(torch.relu(x @ head.proj["s2"].weight.T + head.proj["s2"].bias))
        torch.testing.assert_close(head({"s2": x}), want)


def test_cross_validation_judges_only_classes_with_two_polygons():
    ps = _pixels((3, 3, 1))
    scores = cross_validate(ps, {"s2": (3, 4)}, (2,), PixelHeadConfig(hidden=8, steps=100), folds=3)
    pc = scores["per_class"]
    assert pc["c0"]["judged"] and pc["c1"]["judged"] and pc["c0"]["polygons"] == 3
    assert not pc["c2"]["judged"] and "too few to judge" in pc["c2"]["why"] and "f1" not in pc["c2"]
    assert scores["f1_macro_over"] == ["c0", "c1"] and scores["folds"] == 3
    # c2's only polygon, held out, cannot be predicted: accuracy counts it, the macro F1 is over c0, c1
    assert scores["accuracy"] < 0.95
    assert scores["f1_macro"] == pytest.approx((pc["c0"]["f1"] + pc["c1"]["f1"]) / 2)


def test_folds_spread_each_class_and_hold_whole_polygons():
    ps = _pixels((4, 4, 2))
    folds = polygon_folds(ps, 2, seed=1)
    assert sorted(np.concatenate(folds).tolist()) == list(range(10))
    for f in folds:
        classes = {int(ps.labels[ps.polygon == q][0].argmax()) for q in f}
        assert classes == {0, 1, 2}


def test_scores_count_multi_label_pixels_right_for_any_of_their_classes():
    labels = np.array([[1, 1, 0], [0, 0, 1], [0, 0, 1]], np.float32)
    probs = np.array([[0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.8, 0.1, 0.1]], np.float32)
    s = pixel_scores(labels, probs, np.array([0, 1, 2]), ("a", "b", "c"), min_polygons=1)
    assert s["accuracy"] == pytest.approx(2 / 3)


def test_cached_features_are_what_the_encoders_give_for_each_view():
    torch.manual_seed(0)
    model = MosaicModel(ModelConfig.preset("small", classes=("a", "b"))).eval()
    rng = np.random.default_rng(0)
    images = {"s2": rng.normal(size=(3, 12, 48, 48)).astype(np.float32),
              "s1": rng.normal(size=(3, 2, 48, 48)).astype(np.float32)}
    cached = cached_view_features(model, images, views=2, seed=5, augment=False)
    with torch.no_grad():
        want = model.features(torch.from_numpy(images["s2"]), torch.from_numpy(images["s1"]))
    for m in ("s2", "s1"):
        torch.testing.assert_close(cached[m][:, 0], want[m])
        torch.testing.assert_close(cached[m][:, 1], want[m])
    aug = cached_view_features(model, images, views=2, seed=5, augment=True)
    assert not torch.allclose(aug["s2"][:, 0], aug["s2"][:, 1])  # two different views
    before = {k: v.clone() for k, v in model.encoders.state_dict().items()}
    hist = train_heads_cached(model, aug, np.eye(2, dtype=np.float32)[[0, 1, 0]], np.array([1, 1, 0], bool),
                              LossWeights.preset("mosaic"), epochs=3, batch=3, lr=1e-3, weight_decay=0.05, tau=0.1,
                              seed=0, modality_dropout=0.2)
    assert len(hist) == 3 and all(np.isfinite(h["total"]) for h in hist)
    for k, v in model.encoders.state_dict().items():  # the encoders stay frozen
        torch.testing.assert_close(v, before[k])


def test_label_files_of_any_ogr_format(tmp_path):
    from osgeo import ogr, osr

    poly = {"type": "Polygon", "coordinates": [[[500000, 4000000], [500100, 4000000], [500100, 4000100],
                                                [500000, 4000100], [500000, 4000000]]]}
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32633)
    for driver, name in (("GPKG", "l.gpkg"), ("ESRI Shapefile", "l.shp"), ("GeoJSON", "l.geojson")):
        ds = ogr.GetDriverByName(driver).CreateDataSource(str(tmp_path / name))
        lyr = ds.CreateLayer("labels", srs, ogr.wkbPolygon)
        lyr.CreateField(ogr.FieldDefn("cls", ogr.OFTString))
        for text in ("Arable land; Orchards", "Forest"):
            f = ogr.Feature(lyr.GetLayerDefn())
            f.SetField("cls", text)
            f.SetGeometry(ogr.CreateGeometryFromJson(json.dumps(poly)))
            lyr.CreateFeature(f)
        ds = None
        polygons, crs = read_label_file(tmp_path / name, "cls")
        assert [p.labels for p in polygons] == [["Arable land", "Orchards"], ["Forest"]]
        assert "32633" in crs and polygons[0].geometry["type"] == "Polygon"
    with pytest.raises(ValueError, match="no field 'labels'.*cls"):
        read_label_file(tmp_path / "l.gpkg")
    with pytest.raises(FileNotFoundError):
        read_label_file(tmp_path / "missing.gpkg", "cls")
    (tmp_path / "nocrs.geojson").write_text(json.dumps({"type": "FeatureCollection", "crs": None, "features": []}))


def test_window_valid_fraction_counts_each_window():
    rng = np.random.default_rng(0)
    valid = rng.random((300, 280)) > 0.3
    got = W.window_valid_fraction(valid, 2, 1, 3, 4, 16, 120, -40, -20)
    for i in range(3):
        for j in range(4):
            r = W.patch_origin(2 + i, 16, 120) + 40
            c = W.patch_origin(1 + j, 16, 120) + 20
            win = np.zeros((120, 120), bool)
            rr, cc = slice(max(r, 0), min(r + 120, 300)), slice(max(c, 0), min(c + 120, 280))
            win[rr.start - r: rr.stop - r, cc.start - c: cc.stop - c] = valid[rr, cc]
            assert got[i, j] == pytest.approx(win.mean())
