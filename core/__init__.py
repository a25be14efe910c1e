"""MoSAiC core: models, losses, data, training, evaluation and the scene engine.

Pure Python + torch/numpy/rasterio/scikit-learn. Never imports qgis, so it runs
from a shell, a notebook or a cluster job as well as inside the plugin.
"""
from .openmp import set_openmp_waits

set_openmp_waits()  # before anything imports torch
