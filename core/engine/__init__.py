"""Scene engine: classify and embed whole Sentinel-1 / Sentinel-2 scenes, streaming and dense.

Pure core (no qgis). The QGIS algorithms, the dock panel and the command line call
``run_scene`` / ``describe_inputs``.
"""
from .infer import Cancelled, SceneRequest, SceneResult, describe_inputs, run_scene

__all__ = ["Cancelled", "SceneRequest", "SceneResult", "describe_inputs", "run_scene"]
