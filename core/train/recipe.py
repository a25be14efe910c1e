"""The bundled model's two-stage recipe, as ``python -m core train`` arguments.

Stage 1 is self-supervised only (intra- and inter-modal terms) on the labelled pool's
images and every real unlabelled scene (``data.pretraining_scenes``); stage 2 trains the
MoSAiC objective on the labelled pairs plus the bundled Spain windows, both encoders
starting from stage 1. ``scripts/bundled_model.py`` runs it; ``benchmarks/low_label.py``
uses the same stage 1, so the low-label table measures the recipe that made the model.
"""
from __future__ import annotations

from pathlib import Path

from ..data.pretraining_scenes import PRETRAINING_SCENES, SPAIN, resolve_scenes

STAGE1_EPOCHS = 15
STAGE2_EPOCHS = 100


def stage_finished(out: str | Path) -> bool:
    """The stage in ``out`` wrote its model: a rerun skips it."""
    return (Path(out) / "model.safetensors").is_file() and (Path(out) / "model.json").is_file()


def resume_args(out: str | Path) -> list[str]:
    """``--resume`` when an interrupted stage left a checkpoint in ``out``."""
    return ["--resume"] if (Path(out) / "checkpoint.json").is_file() else []


def _scene_args(scenes) -> list[str]:
    out: list[str] = []
    for s2, s1 in scenes:
        out += ["--unlabelled-scene", s2, s1 or "-"]
    return out


def stage1_args(data: str, seed: int, out: str | Path, epochs: int = STAGE1_EPOCHS) -> list[str]:
    """Self-supervised pretraining on every real image we have (labels unused)."""
    return ["train", "--data", str(data), "--objective", "contrastive", "--epochs", str(epochs),
            "--seed", str(seed), *_scene_args(resolve_scenes(PRETRAINING_SCENES)),
            "--eval-splits", "--quiet", "--out", str(out)]


def stage2_args(data: str, seed: int, out: str | Path, stage1_model: str | Path | None,
                epochs: int = STAGE2_EPOCHS) -> list[str]:
    """The MoSAiC objective on the labelled pairs, from stage 1's encoders; without a stage 1
    (``stage1_model`` None) it is the one-stage recipe that made the shipped model."""
    init = [] if stage1_model is None else ["--pretrained-s2", str(stage1_model), "--pretrained-s1", str(stage1_model)]
    return ["train", "--data", str(data), "--objective", "mosaic", "--epochs", str(epochs), "--seed", str(seed),
            *init, *_scene_args(resolve_scenes((SPAIN,))), "--eval-splits", "validation", "test", "--quiet",
            "--out", str(out)]
