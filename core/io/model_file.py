"""Save and load a MoSAiC model as ``NAME.safetensors`` + ``NAME.json``.

The JSON card holds everything needed to rebuild and use the model (architecture, bands
and their order, processing level, normalisation, class names and colours) plus its
provenance (training data and recipe, measured metrics) and the sha256 of the weights,
checked on load. Writes go to temporary files renamed only when both are complete, so a
failed export never leaves a half-written model. Never pickle: ``torch.load`` of an
untrusted file runs code.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..data.bands import BEN19_CLASSES, BEN19_COLORS, S1_MEAN, S1_STD, S2_MEAN, S2_STD
from ..models.mosaic import ModelConfig, MosaicModel
from .hashing import sha256_file
from .temporaries import beside_tag, remove_stale_beside

FORMAT = "mosaic-model"
FORMAT_VERSION = 2  # 2: a pixel head may be present (``pixel_classes`` in the architecture)


def model_paths(path: str | Path) -> tuple[Path, Path]:
    """(weights, card) paths for a model given as NAME, NAME.json or NAME.safetensors."""
    p = Path(path)
    if p.suffix in (".json", ".safetensors"):
        p = p.with_suffix("")
    return p.with_suffix(".safetensors"), p.with_suffix(".json")


def default_card(cfg: ModelConfig) -> dict[str, Any]:
    """A card with the data conventions of BigEarthNet (L2A, reBEN statistics)."""
    colors = dict(zip(BEN19_CLASSES, BEN19_COLORS))
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "architecture": cfg.to_dict(),
        "inputs": {
            "s2": {"bands": list(cfg.s2_bands), "level": "L2A", "units": "reflectance x 10000",
                   "mean": list(S2_MEAN), "std": list(S2_STD)},
            "s1": {"bands": list(cfg.s1_bands), "units": "dB", "mean": list(S1_MEAN), "std": list(S1_STD)},
            "patch_size": 120,
            "pixel_size_m": 10,
        },
        "classes": [{"name": c, "color": colors.get(c, "#808080")} for c in cfg.classes],
    }


def _atomic_write(path: Path, write) -> Path:
    remove_stale_beside(path)  # what a killed save left
    fd, tmp = tempfile.mkstemp(prefix=Path(beside_tag(path)).name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a model file is for everyone
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def save_model(
    model: MosaicModel, path: str | Path, card: dict[str, Any] | None = None, half: bool = False
) -> tuple[Path, Path]:
    """Write weights and card next to each other; returns their paths."""
    wpath, cpath = model_paths(path)
    wpath.parent.mkdir(parents=True, exist_ok=True)
    full = default_card(model.cfg)
    full.update(card or {})
    full["architecture"] = model.cfg.to_dict()
    # version 1 readers know every field of a model without a pixel head
    full["format"], full["format_version"] = FORMAT, FORMAT_VERSION if model.cfg.pixel_classes else 1
    tensors = {
        k: (v.half() if half and v.is_floating_point() else v).detach().cpu().contiguous()
        for k, v in model.state_dict().items()
    }
    full["dtype"] = "float16" if half else "float32"
    tmp_w = _atomic_write(wpath, lambda p: save_file(tensors, str(p), metadata={"format": FORMAT}))
    full["sha256"] = sha256_file(tmp_w)
    try:
        tmp_c = _atomic_write(cpath, lambda p: p.write_text(json.dumps(full, indent=2)))
    except BaseException:
        tmp_w.unlink(missing_ok=True)
        raise
    os.replace(tmp_w, wpath)
    os.replace(tmp_c, cpath)
    return wpath, cpath


def update_card(path: str | Path, fields: dict[str, Any]) -> Path:
    """Set ``fields`` in the card of the model file ``path`` (the weights are left as they are);
    the card is replaced whole or not at all."""
    card = read_card(path)
    card.update(fields)
    _, cpath = model_paths(path)
    os.replace(_atomic_write(cpath, lambda p: p.write_text(json.dumps(card, indent=2))), cpath)
    return cpath


def read_card(path: str | Path) -> dict[str, Any]:
    """The JSON card of a model file, checked to be a MoSAiC card."""
    _, cpath = model_paths(path)
    if not cpath.is_file():
        raise FileNotFoundError(f"model card {cpath} not found (a model is NAME.safetensors + NAME.json)")
    try:
        card = json.loads(cpath.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{cpath} is not a MoSAiC model card (invalid JSON: {e})") from None
    if not isinstance(card, dict) or card.get("format") != FORMAT:
        raise ValueError(f"{cpath} is not a MoSAiC model card (no \"format\": \"{FORMAT}\")")
    if card.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(f"{cpath} needs a newer plugin (card format {card['format_version']})")
    return card


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[MosaicModel, dict[str, Any]]:
    """Rebuild the model of a card and load its weights (float32), checking the sha256."""
    wpath, _ = model_paths(path)
    card = read_card(path)
    if not wpath.is_file():
        raise FileNotFoundError(f"model weights {wpath} not found next to its card")
    digest = sha256_file(wpath)
    if card.get("sha256") and card["sha256"] != digest:
        raise ValueError(f"{wpath} does not match its card (sha256 differs): the file is corrupt or was replaced")
    try:
        model = MosaicModel(ModelConfig.from_dict(card["architecture"]))
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"the card of {wpath.name} does not describe a model this plugin can build ({e}): "
                         f"it was edited or comes from another program") from None
    try:
        state = load_file(str(wpath))
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{wpath} is not a readable safetensors file: {e}") from None
    ref = model.state_dict()
    bad = [k for k, v in state.items() if k in ref and tuple(v.shape) != tuple(ref[k].shape)]
    if bad:
        raise ValueError(f"{wpath.name} does not fit its card: {bad[0]} is {tuple(state[bad[0]].shape)} in the weights "
                         f"but {tuple(ref[bad[0]].shape)} for the card's classes and bands ({len(bad)} tensor(s) "
                         f"differ); the card was edited, or the two files come from different models")
    state = {k: v.to(ref[k].dtype) if k in ref else v for k, v in state.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{wpath} does not fit its card's architecture: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return model.to(device).eval(), card


def init_encoder_from_state_dict(model: MosaicModel, modality: str, path: str | Path) -> None:
    """Initialise one encoder from a ResNet state dict saved elsewhere (safetensors).

    Keys may carry a prefix such as ``backbone.``/``encoder.``/``module.``; an ``fc`` head is
    ignored; of a MoSAiC model file (a self-supervised stage's output) the ``modality``'s encoder
    is taken. Shapes must match the encoder's (same depth, width 64 and input channels).
    """
    from .pretrained import load_resnet_state  # local: only needed for this path

    load_resnet_state(model.encoders[modality], path, modality)
