"""Device choice shared by training and the scene engine."""
from __future__ import annotations

import os

import torch


def resolve_device(name: str) -> torch.device:
    """'auto' -> the local CUDA device when there is one (LOCAL_RANK under torchrun), else CPU;
    'cuda:N' is checked to exist; anything else is a clear error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ValueError(f"device {name!r} is not a device: use auto, cpu or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device {name!r} is not supported: use auto, cpu or cuda:N")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name} asked for, but torch sees no CUDA GPU: use device cpu")
    if dev.type == "cuda" and (dev.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"device {name} does not exist: this machine has {torch.cuda.device_count()} GPU(s)")
    return dev
