"""The last engine model kept between scenes, keyed by the model files' content.

A job of many scenes (``classify-many``, a worker of a Dask cluster, an analyst's session of
runs in QGIS) would otherwise rebuild the model, fold its BatchNorm and, with ``compile``,
compile its encoders again for every scene. The key is the SHA-256 of the weights and of the
card, not a path or a time stamp: a model fine-tuned into the same file, or a card given new
thresholds, is loaded afresh. One model is kept (a small one: ~3 MB on the device).
"""
from __future__ import annotations

import threading

import torch

from ..io.hashing import sha256_file
from ..io.model_file import model_paths
from .engine_model import EngineModel, load_engine_model

_lock = threading.Lock()
_kept: tuple[tuple, EngineModel] | None = None


def _key(path: str, device: torch.device, compile: bool) -> tuple | None:
    try:
        return tuple(sha256_file(p) for p in model_paths(path)) + (str(device), bool(compile))
    except OSError:
        return None  # missing or unreadable: load_engine_model says what is wrong


def engine_model(path: str, device: torch.device, compile: bool = False) -> EngineModel:
    """The model file ``path`` prepared for ``device``: the kept one when its files are unchanged."""
    global _kept
    key = _key(path, device, compile)
    with _lock:
        if key is not None and _kept is not None and _kept[0] == key:
            return _kept[1]
    em = load_engine_model(path, device, compile=compile)
    if key is not None:
        with _lock:
            _kept = (key, em)
    return em


def forget() -> None:
    """Drop the kept model (frees its device memory; the plugin calls it when unloaded)."""
    global _kept
    with _lock:
        _kept = None
