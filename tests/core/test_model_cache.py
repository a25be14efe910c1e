"""The engine keeps its last model between scenes, and never serves a stale one."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from core.engine import model_cache
from core.io.model_file import update_card
from core.paths import RESOURCES

BUNDLED = RESOURCES / "models" / "mosaic-small-ben19"
CPU = torch.device("cpu")


@pytest.fixture
def model(tmp_path) -> Path:
    for suffix in (".safetensors", ".json"):
        shutil.copy(BUNDLED.with_suffix(suffix), tmp_path / f"m{suffix}")
    model_cache.forget()
    yield tmp_path / "m"
    model_cache.forget()


def test_same_files_same_model(model, tmp_path) -> None:
    first = model_cache.engine_model(str(model), CPU)
    assert model_cache.engine_model(str(model) + ".json", CPU) is first  # NAME and NAME.json are one model
    copy = tmp_path / "copy"
    for suffix in (".safetensors", ".json"):
        shutil.copy(model.with_suffix(suffix), copy.with_suffix(suffix))
    assert model_cache.engine_model(str(copy), CPU) is first  # the content is the key, not the path
    model_cache.forget()
    assert model_cache.engine_model(str(model), CPU) is not first


def test_a_changed_card_or_weights_loads_afresh(model) -> None:
    first = model_cache.engine_model(str(model), CPU)
    assert first.thresholds is None
    classes = first.classes
    update_card(model, {"decision_thresholds": {"values": {c: 0.3 for c in classes}}})
    second = model_cache.engine_model(str(model), CPU)
    assert second is not first and second.thresholds.tolist() == [0.3] * len(classes)
    # other weights under the same name (a fine-tuning writes its model over the old one): a new
    # card with their sha256 is written with them, and the engine must not keep the old weights
    from safetensors.torch import load_file, save_file
    from core.io.hashing import sha256_file
    w = load_file(model.with_suffix(".safetensors"))
    w["head.bias"] = w["head.bias"] + 1.0
    save_file(w, model.with_suffix(".safetensors"), metadata={"format": "pt"})
    update_card(model, {"sha256": sha256_file(model.with_suffix(".safetensors"))})
    third = model_cache.engine_model(str(model), CPU)
    assert third is not second
    assert torch.allclose(third.head_b, second.head_b + 1.0, atol=1e-2)


def test_a_missing_model_still_says_what_is_wrong(tmp_path) -> None:
    with pytest.raises((FileNotFoundError, ValueError), match="gone"):
        model_cache.engine_model(str(tmp_path / "gone"), CPU)


def test_scenes_in_a_row_load_the_model_once(model, tmp_path, monkeypatch) -> None:
    """run_scene takes the kept model: a second scene builds nothing, and writes what a fresh load writes."""
    import numpy as np
    import rasterio

    from core.engine import SceneRequest, run_scene

    loads = []
    real = model_cache.load_engine_model
    monkeypatch.setattr(model_cache, "load_engine_model", lambda *a, **k: loads.append(a) or real(*a, **k))
    sar = RESOURCES / "sample" / "spain" / "Spain_7370579_S1Hand.tif"
    outs = []
    for name in ("a", "b"):
        res = run_scene(SceneRequest(model=str(model), sar=str(sar), stride=32,
                                     outputs={"probabilities": str(tmp_path / f"{name}.tif")}))
        outs.append(res.outputs["probabilities"])
    assert len(loads) == 1
    model_cache.forget()
    res = run_scene(SceneRequest(model=str(model), sar=str(sar), stride=32,
                                 outputs={"probabilities": str(tmp_path / "c.tif")}))
    assert len(loads) == 2
    with rasterio.open(outs[1]) as b, rasterio.open(res.outputs["probabilities"]) as c:
        assert np.array_equal(b.read(), c.read())
