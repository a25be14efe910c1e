"""A run's plan: everything decided before the first block is read.

``make_plan`` opens the inputs, maps their bands, checks processing level and SAR units,
chooses the reference grid, the mode, the output stride, the halo and the blocks, lays out
the dense feature grid and the outputs, decides which inputs are decoded once first, and
checks that the disk holds all of it. The passes (``dense``, ``sliding``, ``clusters``) take
the plan and only run; ``ScenePlan.warnings`` collects what the user should read.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import rasterio

from ..io.model_file import model_paths
from ..io.overwrite_guard import check_outputs_spare_inputs, raster_files
from . import windows as W
from .align import Grid, reference_grid
from .band_reader import on_grid
from ..io.temporaries import beside_tag, remove_stale_beside
from .disk_space import MB, check_free_space
from .engine_model import EngineModel
from .feature_grid import FeatureAxis
from .input_values import read_values
from .outputs import output_specs
from .request import FINE_KINDS, LABEL, SceneRequest
from .scene_inputs import StagingPlan, fit_staging, open_input, staging_plan

# 'auto' runs dense where dense gives the sliding-window reference's dominant class on >= 95 % of
# the cells the reference decides (top-two margin > 0.05) with a mean probability difference
# <= 0.02. Measured with the bundled model at every stride from 16 to 120 px on the real Spain
# S2 + S1 and USA L1C scenes (benchmarks/dense_agreement.py; docs/engine/scene_inference.md):
# 96.9-100 % and 0.007-0.015. Near-ties flip either way: with them, 97.0-98.4 % agree on USA
# and 81.7-94.7 % on Spain, whose cells are 60 % near-ties. Where windows do not overlap
# (stride >= the window), the exact sliding reference does no more encoder work than dense.
# Dense mode computes each feature cell once, reading DENSE_CONTEXT px of receptive-field context
# around the cells a block owns (``feature_grid``); the pooling windows of edge cells take their
# neighbours' features from the store instead of a wider halo.
DENSE_CONTEXT = 64


@dataclass
class ScenePlan:
    """What a run reads, computes and writes; see ``make_plan``."""

    req: SceneRequest
    srcs: dict[str, Any]             # modality -> open rasterio dataset (closed by ``close``)
    maps: dict[str, Any]             # modality -> BandMapping (file bands in the model's order)
    to_db: bool                      # the SAR input is linear power, read in dB
    grid: Grid                       # the reference grid every input is read on
    mode: str                        # dense | sliding
    stride: int                      # output cell size in reference pixels
    halo: int                        # pixels read around a block
    block: int                       # block edge in reference pixels
    enc_stride: int                  # the encoders' output stride
    out_h: int
    out_w: int
    out_transform: Any
    nblocks: int
    axes: tuple[FeatureAxis, FeatureAxis]  # dense mode's scene-wide feature grid
    store_origin: tuple[int, int]    # the feature cell at store cell (0, 0)
    store_rows: int
    store_cols: int
    tag: str                         # path prefix of the run's temporary files
    tags: dict[str, str]             # metadata written into every output
    specs: dict[str, dict]           # output kind -> OutputRaster arguments
    direct: dict[str, bool]          # modality -> the input is read on the grid without warping
    to_stage: StagingPlan
    room: int | None                 # bytes compressed staged copies share (None: uncompressed)
    warnings: list[str] = field(default_factory=list)
    optical_offset: float = 0.0      # DN subtracted from the optical bands (reflectance_offset.py)

    @property
    def modalities(self) -> list[str]:
        return list(self.srcs)

    @property
    def grid_args(self) -> dict[str, Any]:
        """The output grid of window outputs, as ``OutputRaster`` takes it."""
        return dict(crs=self.grid.crs, transform=self.out_transform, width=self.out_w, height=self.out_h)

    @property
    def fine_grid_args(self) -> dict[str, Any]:
        """The grid of fine (per-pixel) outputs: the reference grid itself."""
        return dict(crs=self.grid.crs, transform=self.grid.transform, width=self.grid.width, height=self.grid.height)

    @property
    def fine_kinds(self) -> list[str]:
        """The fine outputs asked for (dense pass 1 also applies the pixel head when there are any)."""
        return [k for k in self.req.outputs if k in FINE_KINDS]

    @property
    def fine(self) -> bool:
        return bool(self.fine_kinds)

    @property
    def windows(self) -> bool:
        """Window outputs asked for: dense mode stores the features and pools them in a second pass."""
        return any(k not in FINE_KINDS for k in self.req.outputs)

    def blocks(self) -> Iterator[W.Block]:
        """The output blocks, row-major, with the halo of the plan's mode."""
        return W.iter_blocks(self.grid.height, self.grid.width, self.stride, self.block, self.halo, self.enc_stride)

    def close(self) -> None:
        for s in self.srcs.values():
            s.close()


def make_plan(req: SceneRequest, em: EngineModel) -> ScenePlan:
    """Open the inputs and decide everything about the run (see the module docstring).

    Raises ValueError / FileNotFoundError with what to change; closes what it opened on error.
    """
    warns: list[str] = []
    srcs: dict[str, Any] = {}
    try:
        for m, p in (("s2", req.optical), ("s1", req.sar)):
            if p is not None:
                srcs[m] = open_input(p, LABEL[m])
        reads = {f"{LABEL[m]} raster": raster_files(s) for m, s in srcs.items()}
        reads.update(zip(("model's weights", "model's card"), ([str(f)] for f in model_paths(req.model))))
        check_outputs_spare_inputs({f"{k} output": v for k, v in req.outputs.items()}, reads)
        return _plan(req, em, srcs, warns)
    except BaseException:
        for s in srcs.values():
            s.close()
        raise


def _plan(req: SceneRequest, em: EngineModel, srcs: dict[str, Any], warns: list[str]) -> ScenePlan:
    if any(k in FINE_KINDS for k in req.outputs):
        _check_pixel_head(req, em, list(srcs), warns)
    vals = read_values(srcs, em.bands, {"s2": req.optical_bands, "s1": req.sar_bands}, em.stats["s2"][0], em.level,
                       req.optical_level, req.sar_units, req.optical_offset)
    maps, offset, to_db = vals.maps, vals.offset, vals.to_db
    warns += vals.warnings
    primary = srcs.get("s2") or srcs["s1"]
    others = [s for s in srcs.values() if s is not primary]
    grid, native = reference_grid(primary, others, em.pixel_size, req.extent, req.extent_crs)
    if not native:
        warns.append(f"inputs resampled to a {em.pixel_size:g} m grid in {grid.crs.to_string()}")
    mode = auto_mode(req.stride, em.patch, any(k in FINE_KINDS for k in req.outputs)) if req.mode == "auto" \
        else req.mode
    stride = req.stride or (em.stride if mode == "dense" else em.patch // 2)
    if mode == "dense":  # receptive-field context around each block's own feature cells
        # (at least one feature cell: the read window must hold the pixels of the block's cells)
        halo = max(em.stride, W.round_up(req.halo if req.halo is not None else DENSE_CONTEXT, em.stride))
    else:  # the windows of the block's cells
        halo = max(req.halo if req.halo is not None else W.default_halo(em.patch, em.stride),
                   em.patch // 2 + stride)
    block = max(req.block_size, stride)
    out_h, out_w = W.output_shape(grid.height, grid.width, stride)
    axes = (FeatureAxis(out_h, stride, em.patch, em.stride, em.patch_cells),
            FeatureAxis(out_w, stride, em.patch, em.stride, em.patch_cells))
    (r0, r1), (c0, c1) = axes[0].cells, axes[1].cells
    tag = beside_tag(next(iter(req.outputs.values())))  # staged copies and feature stores: beside the first output
    stale = [f for out in req.outputs.values() for f in remove_stale_beside(out)]
    if stale:
        warns.append(f"deleted {len(stale)} temporary file(s) ({sum(n for _, n in stale) / MB:.0f} MB) that an "
                     f"earlier run beside these outputs left when it was stopped")
    tags = {"model": Path(req.model).name, "mode": mode, "stride_px": str(stride), "window_px": str(em.patch)}
    if offset:
        tags["optical_offset_dn"] = f"{offset:g}"
    specs = output_specs(req, em, list(srcs), tags)
    windows = any(k not in FINE_KINDS for k in req.outputs)
    stores = [(tag, (r1 - r0) * (c1 - c0) * (em.dim + 1) * 4 * len(srcs)), (tag, out_h * out_w * len(srcs))] \
        if mode == "dense" and windows else []
    direct = {m: on_grid(src, grid) for m, src in srcs.items()}
    to_stage = staging_plan(req, srcs, maps, grid, direct, tag, warns)
    needs = _disk_needs(req, specs, out_h * out_w, grid.height * grid.width, stores)
    what = f"this {mode} run ({out_w} x {out_h} output cells)"
    check_free_space(needs, what)
    room = fit_staging(to_stage, needs, what, req.stage, warns)
    return ScenePlan(req, srcs, maps, to_db, grid, mode, stride, halo, block, em.stride, out_h, out_w,
                     grid.transform * rasterio.Affine.scale(stride),
                     W.count_blocks(grid.height, grid.width, stride, block), axes, (r0, c0), r1 - r0, c1 - c0,
                     tag, tags, specs, direct, to_stage, room, warns, offset)


def auto_mode(stride: int | None, patch: int, fine: bool) -> str:
    """What ``mode='auto'`` runs: dense, except at strides of a whole window or more without fine
    outputs (which only dense gives), where each pixel is in one window at most and the exact
    sliding reference costs no more than dense's pass over every pixel."""
    return "sliding" if stride is not None and stride >= patch and not fine else "dense"


def _check_pixel_head(req: SceneRequest, em: EngineModel, given: list[str], warns: list[str]) -> None:
    """Fine outputs need a pixel head trained on at least one of the given inputs."""
    if em.pixel_head is None:
        raise ValueError(f"the model {Path(req.model).name} has no pixel head, so it gives no fine (per-pixel) "
                         f"outputs: fine-tune it from labelled polygons first (python -m core finetune, or "
                         f"mosaic:finetune in QGIS), or ask for window outputs only")
    usable = [m for m in given if m in em.pixel_modalities]
    if not usable:
        need = " and ".join(LABEL[m] for m in em.pixel_modalities)
        raise ValueError(f"the model's pixel head was trained on the {need} input: give it for fine outputs")
    for m in given:
        if m not in em.pixel_modalities:
            warns.append(f"the {LABEL[m]} input is not used by the fine outputs: the pixel head was trained "
                         f"without it")


def _disk_needs(req: SceneRequest, specs: dict[str, dict], cells: int, pixels: int,
                stores: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """(file, bytes at most) of every file a run writes: each output uncompressed with a third
    more for overviews and a header (``cells`` per window output, ``pixels`` per fine output);
    ``stores``: dense mode's feature stores."""
    header = 64 * 1024  # TIFF header, tile index, colour table, tags
    return [(req.outputs["clusters" if k == "_embeddings" else k],  # beside the clusters it is for
             (pixels if k in FINE_KINDS else cells) * sp["count"] * np.dtype(sp["dtype"]).itemsize * 4 // 3 + header)
            for k, sp in specs.items()] + stores
