"""Scene engine: classify and embed whole Sentinel-1 / Sentinel-2 scenes, streaming and dense.

Pure core (no qgis). The QGIS algorithms, the dock panel and the command line call
``run_scene`` / ``describe_inputs``. They are loaded on first use, so that the torch-free
parts (``align``: band names, units, grids) can be imported without torch, e.g. by the dock
to show a layer's band mapping.
"""
from __future__ import annotations

from typing import Any

__all__ = ["Cancelled", "SceneRequest", "SceneResult", "describe_inputs", "run_scene"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import infer
        return getattr(infer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
