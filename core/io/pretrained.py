"""Initialise an encoder from a ResNet state dict pretrained elsewhere (e.g. SSL4EO-S12).

Accepts safetensors, or a torch file read with ``weights_only=True`` (no code runs).
Common key prefixes are stripped and classifier keys (``fc.``) ignored; any shape that
does not fit is a clear error naming the first offending key.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

_PREFIXES = ("module.", "backbone.", "encoder.", "model.", "encoder_q.")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"pretrained weights {p} not found")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(p))
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - UnpicklingError, a zip or pickle of something else
        raise ValueError(f"{p} is not a plain state dict of tensors (it holds pickled objects, or is no torch "
                         f"file at all; {type(e).__name__}); nothing was run. Save the weights with "
                         f"torch.save(model.state_dict(), path) or as safetensors") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ValueError(f"{p} holds no state dict")
    return obj


def load_resnet_state(encoder: nn.Module, path: str | Path, modality: str | None = None) -> list[str]:
    """Load matching keys into ``encoder``; returns the keys that were loaded. A MoSAiC model
    file holds both encoders (``encoders.s2.*``, ``encoders.s1.*``): ``modality`` picks one."""
    state = read_state_dict(path)
    if modality is not None and any(k.startswith("encoders.") for k in state):
        mine = f"encoders.{modality}."
        state = {k[len(mine):]: v for k, v in state.items() if k.startswith(mine)}
    clean: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        for pre in _PREFIXES:
            if k.startswith(pre):
                k = k[len(pre):]
        if not k.startswith("fc."):
            clean[k] = v
    own = encoder.state_dict()
    for k, v in clean.items():
        if k in own and own[k].shape != v.shape:
            raise ValueError(
                f"{path}: {k} has shape {tuple(v.shape)}, this encoder needs {tuple(own[k].shape)} "
                "(check depth, width=64 and the number of input bands)"
            )
    loaded = [k for k in clean if k in own]
    if len(loaded) < len(own) // 2:
        raise ValueError(f"{path}: only {len(loaded)} of {len(own)} encoder keys found; is it a ResNet of this depth?")
    encoder.load_state_dict({**own, **{k: clean[k].to(own[k].dtype) for k in loaded}})
    return loaded
