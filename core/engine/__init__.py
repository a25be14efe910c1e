"""Scene engine: classify and embed whole Sentinel-1 / Sentinel-2 scenes, streaming and dense.

Pure core (no qgis). The QGIS algorithms, the dock panel and the command line call
``run_scene`` / ``describe_inputs``. They are loaded on first use, so that the torch-free
parts (``align``: band names, units, grids) can be imported without torch, e.g. by the dock
to show a layer's band mapping.
"""
from __future__ import annotations

from ..lazy import lazy_getattr

# public name -> the module that defines it (imported on first use: torch is heavy)
_HOME = {"Cancelled": "request", "SceneRequest": "request", "SceneResult": "request",
         "describe_inputs": "describe", "run_scene": "run"}
__all__ = list(_HOME)
__getattr__ = lazy_getattr(__name__, _HOME)
