"""Checkpoints without pickle: model + AdamW state in safetensors, counters in JSON.

Written to temporary files and renamed, so an interrupted save leaves the previous
checkpoint intact.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file


def save_checkpoint(folder: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, info: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    params = [p for g in opt.param_groups for p in g["params"]]
    steps = {}
    for i, p in enumerate(params):
        st = opt.state.get(p, {})
        for k, v in st.items():
            if torch.is_tensor(v) and v.ndim > 0:
                tensors[f"optim.{i}.{k}"] = v.detach().cpu().contiguous()
            elif k == "step":
                steps[str(i)] = float(v)
    tmp_w, tmp_j = folder / ".checkpoint.safetensors.tmp", folder / ".checkpoint.json.tmp"
    try:
        save_file(tensors, str(tmp_w))
        tmp_j.write_text(json.dumps({**info, "optim_steps": steps}, indent=2))
    except BaseException:  # stopped or failed mid-save: the last whole checkpoint stays, no half file beside it
        tmp_w.unlink(missing_ok=True)
        tmp_j.unlink(missing_ok=True)
        raise
    os.replace(tmp_w, folder / "checkpoint.safetensors")
    os.replace(tmp_j, folder / "checkpoint.json")


def load_checkpoint(folder: Path, model: torch.nn.Module, opt: torch.optim.Optimizer) -> dict[str, Any]:
    wpath, jpath = folder / "checkpoint.safetensors", folder / "checkpoint.json"
    if not (wpath.is_file() and jpath.is_file()):
        raise FileNotFoundError(f"no checkpoint to resume in {folder}")
    tensors = load_file(str(wpath))
    info = json.loads(jpath.read_text())
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    params = [p for g in opt.param_groups for p in g["params"]]
    for i, p in enumerate(params):
        st = {k.split(".", 2)[2]: v.to(p.device) for k, v in tensors.items() if k.startswith(f"optim.{i}.")}
        if st:
            st["step"] = torch.tensor(info["optim_steps"].get(str(i), 0.0))
            opt.state[p] = st
    return info
