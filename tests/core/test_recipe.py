"""The bundled model's two-stage recipe: its commands parse, its scene list is checked, and a
rerun of scripts/bundled_model.py skips finished stages and resumes an interrupted one."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from core.cli import build_parser
from core.data.pretraining_scenes import PRETRAINING_SCENES, resolve_scenes
from core.train.recipe import STAGE1_EPOCHS, stage1_args, stage2_args

ROOT = Path(__file__).resolve().parents[2]
HAVE_DATA = all(Path(ROOT, p).exists() for pair in PRETRAINING_SCENES for p in pair if p)


def _script():
    spec = importlib.util.spec_from_file_location("bundled_model", ROOT / "scripts" / "bundled_model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_missing_pretraining_scenes_are_named_with_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="../shared/data"):
        resolve_scenes(((str(tmp_path / "nope.tif"), None),), root=tmp_path)


@pytest.mark.skipif(not HAVE_DATA, reason="the development data ../shared/data is not beside this checkout")
def test_both_stages_are_valid_train_commands(tmp_path):
    one = build_parser().parse_args(stage1_args("data", 3, tmp_path / "s1"))
    assert one.objective == "contrastive" and one.epochs == STAGE1_EPOCHS and one.seed == 3
    assert len(one.unlabelled_scene) == len(PRETRAINING_SCENES) and one.eval_splits == []
    assert sum(s1 == "-" for _, s1 in one.unlabelled_scene) == 2  # the Major-TOM cells: optical only
    two = build_parser().parse_args(stage2_args("data", 3, tmp_path / "s2", tmp_path / "s1" / "model.safetensors"))
    assert two.objective == "mosaic" and two.pretrained_s2 == two.pretrained_s1 == str(tmp_path / "s1" / "model.safetensors")
    assert len(two.unlabelled_scene) == 1 and two.eval_splits == ["validation", "test"]
    one = build_parser().parse_args(stage2_args("data", 0, tmp_path / "s2", None))  # the shipped model's recipe
    assert one.pretrained_s2 is None and one.pretrained_s1 is None and one.objective == "mosaic" and one.epochs == 100


def test_a_rerun_skips_finished_stages_and_resumes_the_interrupted_one(tmp_path, monkeypatch):
    mod = _script()
    calls = []
    monkeypatch.setattr(mod, "core_main", lambda args: calls.append(args) or 0)
    done, half = tmp_path / "stage1", tmp_path / "stage2"
    done.mkdir()
    (done / "model.safetensors").write_bytes(b"")
    (done / "model.json").write_text("{}")
    mod.run_stage("stage 1", ["train"], done, [])
    assert calls == []
    half.mkdir()
    (half / "checkpoint.json").write_text("{}")
    mod.run_stage("stage 2", ["train"], half, ["--device", "cpu"])
    assert calls == [["train", "--device", "cpu", "--resume"]]
    monkeypatch.setattr(mod, "core_main", lambda args: 1)
    with pytest.raises(SystemExit, match="rerun the same command"):
        mod.run_stage("stage 2", ["train"], half, [])
