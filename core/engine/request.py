"""What a scene run is asked for (``SceneRequest``), what it gives back (``SceneResult``), and
the checks of a request that need no file: the engine's vocabulary, shared by every stage."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..io.overwrite_guard import check_output_folder
from .staging import STAGE_MODES
from .windows import WINDOW_VALID_MIN

# one value per output cell: the model's answer for the training window centred there
WINDOW_KINDS = ("probabilities", "dominant", "multihot", "uncertainty", "embeddings", "clusters")
# one value per reference-grid pixel, from the pixel head of a model fine-tuned from polygons
FINE_KINDS = ("fine_classes", "fine_probabilities", "fine_uncertainty")
OUTPUT_KINDS = WINDOW_KINDS + FINE_KINDS
MODES = ("auto", "dense", "sliding")
MIN_BLOCK = 128  # px: Processing's minimum too
LABEL = {"s2": "optical", "s1": "SAR"}  # how messages name a modality's input


class Cancelled(Exception):
    """The run was cancelled through ``is_cancelled``; no output file was left behind."""


@dataclass
class SceneRequest:
    """What to classify or embed, and how. See ``run_scene``."""

    model: str
    optical: str | None = None
    sar: str | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    optical_bands: list[str] | None = None
    sar_bands: list[str] | None = None
    sar_units: str = "auto"
    extent: tuple[float, float, float, float] | None = None
    extent_crs: str | None = None
    mode: str = "auto"
    stride: int | None = None
    device: str = "auto"
    batch_size: int = 64  # windows per encoder call in sliding mode (benchmarks/onnx_sliding.py)
    threads: int | None = None
    probability_dtype: str = "uint8"
    clusters: int = 8
    cluster_sample: int = 20000
    seed: int = 0
    block_size: int = 2048
    # optional extras
    halo: int | None = None           # context read around a block (dense: 64 px of receptive field; sliding: 128 px)
    optical_level: str = "auto"       # auto | L1C | L2A: what the optical input is (auto: from name/metadata)
    compile: bool = False             # torch.compile the encoders (pays on long runs)
    prefetch: bool = True             # read the next block while this one computes (about half a block more in RAM)
    stage: str = "auto"               # auto | always | never: decode slow inputs once before the run (staging.py)
    window_valid_min: float = WINDOW_VALID_MIN  # a window output needs this share of its window's pixels with data
    optical_offset: float | None = None  # DN to subtract from the optical bands (None: from metadata or name)


@dataclass
class SceneResult:
    outputs: dict[str, str]
    crs: str
    width: int
    height: int
    mode: str
    warnings: list[str]
    seconds: float
    stride: int = 0
    blocks: int = 0
    staged: dict[str, str] = field(default_factory=dict)  # input ("optical"/"SAR") -> why it was decoded once first
    given: dict[str, tuple[int, int]] = field(default_factory=dict)  # "window"/"fine" -> (cells answered, cells)


def check_request(req: SceneRequest) -> None:
    """ValueError / FileNotFoundError for a request no run could serve, before any file is opened."""
    if req.optical is None and req.sar is None:
        raise ValueError("give an optical (Sentinel-2) and/or a SAR (Sentinel-1) raster")
    if not req.outputs:
        raise ValueError(f"ask for at least one output: {', '.join(OUTPUT_KINDS)}")
    bad = [k for k in req.outputs if k not in OUTPUT_KINDS]
    if bad:
        raise ValueError(f"unknown output kind(s) {bad}; choose from {', '.join(OUTPUT_KINDS)}")
    if req.mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {req.mode!r}")
    if req.mode == "sliding" and any(k in FINE_KINDS for k in req.outputs):
        raise ValueError("fine outputs come from dense mode's encoder pass: use mode dense or auto")
    if req.stage not in STAGE_MODES:
        raise ValueError(f"stage must be one of {', '.join(STAGE_MODES)}, got {req.stage!r}")
    if req.sar_units not in ("auto", "db", "linear"):
        raise ValueError(f"sar_units must be auto, db or linear, got {req.sar_units!r}")
    if req.probability_dtype not in ("uint8", "float32"):
        raise ValueError(f"probability_dtype must be uint8 or float32, got {req.probability_dtype!r}")
    if req.stride is not None and req.stride < 1:
        raise ValueError(f"stride must be >= 1 pixel, got {req.stride}")
    if req.batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {req.batch_size}")
    if req.block_size < MIN_BLOCK:
        raise ValueError(f"block_size must be at least {MIN_BLOCK} pixels (default 2048; smaller blocks only "
                         f"repeat the context read around each), got {req.block_size}")
    if req.halo is not None and req.halo < 0:
        raise ValueError(f"halo must be >= 0 pixels, got {req.halo}")
    if req.threads is not None and req.threads < 1:
        raise ValueError(f"threads must be >= 1 (or left out: all cores), got {req.threads}")
    if "clusters" in req.outputs and not (2 <= req.clusters <= 254):
        raise ValueError(f"clusters must be between 2 and 254, got {req.clusters}")
    if not 0.0 <= req.window_valid_min <= 1.0:
        raise ValueError(f"window_valid_min is a share of a window's pixels, from 0 to 1; got {req.window_valid_min}")
    if req.optical_level.upper() not in ("AUTO", "L1C", "L2A"):
        raise ValueError(f"optical_level must be auto, L1C or L2A, got {req.optical_level!r}")
    paths = list(req.outputs.values())
    if len(set(map(os.path.abspath, paths))) != len(paths):
        raise ValueError("two outputs have the same path")
    for p in paths:
        check_output_folder(Path(p).parent)
