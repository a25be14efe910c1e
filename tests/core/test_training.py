"""Training on the real bundled sample: the loss goes down, held-out AP beats the class prior,
resume continues exactly, and model files round-trip."""
import json

import numpy as np
import pytest
import torch

from core.data.reben import ReBenPatches
from core.eval.metrics import class_prior_scores, multilabel_metrics
from core.eval.predict import predict
from core.io.model_file import load_model, save_model
from core.paths import SAMPLE_REBEN
from core.train.config import TrainConfig
from core.train.loop import train


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.set_num_threads(2)
    out = tmp_path_factory.mktemp("train")
    cfg = TrainConfig(data=str(SAMPLE_REBEN), out=str(out), epochs=12, batch_size=16, seed=0,
                      device="cpu", progress=False)
    return cfg, train(cfg)


def test_loss_goes_down(trained):
    _, res = trained
    first, last = res.history[0], res.history[-1]
    assert last["total"] < 0.9 * first["total"]
    assert last["bce"] < first["bce"] and last["supcon"] < first["supcon"]


def test_beats_class_prior_on_held_out_patches(trained):
    cfg, res = trained
    held = ReBenPatches(SAMPLE_REBEN, ("validation", "test"))
    train_labels = ReBenPatches(SAMPLE_REBEN, ("train",)).labels.numpy()
    out = predict(res.model, held)
    m = multilabel_metrics(out["labels"], out["probs"], held.classes)
    prior = multilabel_metrics(out["labels"], class_prior_scores(train_labels, len(held)), held.classes)
    assert m["ap_macro"] > prior["ap_macro"] + 0.05
    assert m["ap_micro"] > prior["ap_micro"] + 0.05


class _Interrupted(Exception):
    pass


def test_resume_continues_the_same_run(tmp_path):
    """A run killed during epoch 3 and resumed ends where an uninterrupted run ends."""
    base = dict(data=str(SAMPLE_REBEN), splits=("validation",), batch_size=8, seed=1, device="cpu",
                progress=False, warmup_epochs=1, epochs=3)
    full = train(TrainConfig(out=str(tmp_path / "a"), **base))

    def crash(step):
        if step["step"] == 5:  # first step of epoch 3, after the epoch-2 checkpoint
            raise _Interrupted

    with pytest.raises(_Interrupted):
        train(TrainConfig(out=str(tmp_path / "b"), **base), on_step=crash)
    resumed = train(TrainConfig(out=str(tmp_path / "b"), resume=True, **base))
    a, b = full.model.state_dict(), resumed.model.state_dict()
    worst = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    assert worst < 1e-5
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]


def test_model_file_round_trip_and_guards(trained, tmp_path):
    _, res = trained
    w, c = save_model(res.model, tmp_path / "m", {"training": {"note": "test"}}, half=True)
    model, card = load_model(tmp_path / "m.json")
    assert card["inputs"]["s2"]["level"] == "L2A" and len(card["classes"]) == 19
    x2, x1 = torch.randn(2, 12, 120, 120), torch.randn(2, 2, 120, 120)
    with torch.no_grad():
        p_ref = torch.sigmoid(res.model.eval()(x2, x1)["logits"])
        p_new = torch.sigmoid(model(x2, x1)["logits"])
    assert (p_ref - p_new).abs().max() < 5e-3  # float16 storage
    # corrupt weights are refused by the sha256 check
    data = bytearray(w.read_bytes())
    data[-10] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="sha256"):
        load_model(tmp_path / "m")
    # a foreign JSON is not a model card
    (tmp_path / "x.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(ValueError, match="not a MoSAiC model card"):
        load_model(tmp_path / "x")


def test_missing_modality_still_classifies(trained):
    _, res = trained
    held = ReBenPatches(SAMPLE_REBEN, ("validation",))
    for mods in (("s2",), ("s1",)):
        out = predict(res.model, held, mods)
        assert np.isfinite(out["probs"]).all() and out["probs"].shape == (14, 19)


def test_fine_tune_protocol_trains_only_the_head(tmp_path):
    """--init MODEL --train-parts head: encoders stay as they were (BatchNorm statistics too)."""
    from core.paths import RESOURCES

    bundled = RESOURCES / "models" / "mosaic-small-ben19"
    before, _ = load_model(bundled)
    cfg = TrainConfig(data=str(SAMPLE_REBEN), splits=("validation",), out=str(tmp_path), epochs=1, batch_size=8,
                      device="cpu", progress=False, init=str(bundled), train_parts="head", objective="supervised")
    after = train(cfg).model.state_dict()
    ref = before.state_dict()
    enc = [k for k in ref if k.startswith("encoders.") and ref[k].is_floating_point()]
    assert all(torch.equal(ref[k], after[k]) for k in enc)
    assert not torch.equal(ref["head.bias"], after["head.bias"])
