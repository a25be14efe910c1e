"""Per-class decision thresholds: chosen for F1 on a validation split, stored in the card, used
by the engine's multi-hot output and reported by evaluate beside the random-forest baseline."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

from core.eval.thresholds import DEFAULT, FLOOR, card_thresholds, choose_thresholds

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "resources" / "models" / "mosaic-small-ben19"
SPAIN = ROOT / "resources" / "sample" / "spain"


def test_each_class_gets_its_f1_best_threshold_or_the_default():
    rng = np.random.default_rng(0)
    n = 200
    y = np.zeros((n, 3), int)
    y[:60, 0] = 1  # a rare-ish class the model scores low: positives at 0.2-0.4, negatives below 0.2
    s = np.zeros((n, 3))
    s[:, 0] = np.where(y[:, 0] == 1, rng.uniform(0.2, 0.4, n), rng.uniform(0.0, 0.19, n))
    y[:2, 1] = 1  # two positives only: too few to choose from
    s[:, 1] = rng.uniform(0, 1, n)
    s[:, 2] = rng.uniform(0, 0.01, n)  # never positive, scored near 0
    y[:5, 2] = 1
    t = choose_thresholds(y, s)
    assert s[60:, 0].max() < t[0] <= s[:60, 0].min()  # separates the two perfectly
    assert ((s[:, 0] >= t[0]) == y[:, 0].astype(bool)).all()
    assert t[1] == DEFAULT
    assert t[2] >= FLOOR  # a near-zero score never predicts a class everywhere


def test_card_thresholds_follow_the_class_order_and_name_what_is_missing():
    card = {"decision_thresholds": {"values": {"a": 0.2, "b": 0.7}}}
    assert card_thresholds(card, ["b", "a"]).tolist() == [0.7, 0.2]
    assert card_thresholds({}, ["a"]) is None
    with pytest.raises(ValueError, match="lack 'c'.*python -m core thresholds"):
        card_thresholds(card, ["a", "c"])


def _run(*args):
    return subprocess.run([sys.executable, "-m", "core", *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout


def test_thresholds_go_in_the_card_and_into_multihot_and_evaluate(tmp_path):
    for f in MODEL.parent.glob(MODEL.name + ".*"):
        shutil.copy(f, tmp_path / f.name)
    model = tmp_path / MODEL.name
    weights = (tmp_path / (MODEL.name + ".safetensors")).read_bytes()
    out = _run("thresholds", "--model", model)
    assert "at the new thresholds" in out
    card = json.loads((tmp_path / (MODEL.name + ".json")).read_text())
    values = card["decision_thresholds"]["values"]
    assert list(values) == [c["name"] for c in card["classes"]] and card["decision_thresholds"]["chosen_on"]["patches"]
    assert (tmp_path / (MODEL.name + ".safetensors")).read_bytes() == weights  # the card alone changes

    # the multi-hot output sets bit k where p_k >= the card's threshold k, and says so in its tags
    thr = np.array([0.05 + 0.04 * k for k in range(len(values))])
    card["decision_thresholds"]["values"] = dict(zip(values, thr.tolist()))
    (tmp_path / (MODEL.name + ".json")).write_text(json.dumps(card))
    _run("classify", "--model", model, "--optical", SPAIN / "Spain_7370579_S2Hand.tif", "--sar",
         SPAIN / "Spain_7370579_S1Hand.tif", "--optical-bands", "S2-13", "--stride", 48, "--probability-dtype",
         "float32", "--probabilities", tmp_path / "p.tif", "--multihot", tmp_path / "m.tif", "--quiet")
    with rasterio.open(tmp_path / "p.tif") as p, rasterio.open(tmp_path / "m.tif") as m:
        probs, bits, tags = p.read(), m.read(1).astype(np.uint64), m.tags()
    ok = np.isfinite(probs).all(0)
    want = ((probs[:, ok] >= thr[:, None]).astype(np.uint64) << np.arange(len(thr), dtype=np.uint64)[:, None]).sum(0)
    assert ok.sum() > 10 and (bits[ok] == want).all()
    assert (bits[ok] != ((probs[:, ok] >= 0.5).astype(np.uint64) << np.arange(len(thr), dtype=np.uint64)[:, None]).sum(0)).any()
    assert float(tags["threshold_3"]) == pytest.approx(thr[3]) and "threshold" in tags["encoding"]

    # evaluate: F1 at 0.5 and at the card's thresholds, the class prior and the random forest
    out = _run("evaluate", "--model", model, "--out", tmp_path / "e.json")
    assert "at the card's thresholds" in out and "random forest on band mean/std: AP macro" in out
    r = json.loads((tmp_path / "e.json").read_text())
    assert r["thresholds"] == pytest.approx(thr.tolist()) and r["random_forest"]["ap_macro"] is not None
