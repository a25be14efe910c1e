"""Training pixels for the pixel head: the hypercolumn of every pixel inside the analyst's polygons.

Each polygon is rasterised on the engine's reference grid. The polygons' pixels are grouped by
the grid tile they fall in; each tile's pixels are read once with ``CONTEXT`` pixels of
receptive-field context on every side (as the engine's dense blocks are), normalised as the
engine does, and run once through each encoder, keeping the stage outputs the pixel head reads;
the hypercolumns of the pixels are sampled from them
(``models.pixel_head.hypercolumns``). With frozen encoders this is the only encoder pass the
pixel head's training needs: its epochs and cross-validation folds run on these vectors.

Each tile is placed at a random phase of the encoder's output stride: the engine's lattice of
feature cells depends on the output stride a run chooses, and the head should not.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
from rasterio.crs import CRS
from rasterio.features import geometry_mask
from rasterio.transform import Affine
from rasterio.warp import transform_geom

from ..models.mosaic import MosaicModel
from ..models.pixel_head import hypercolumns
from .samples import LabelledPolygon, check_every_class_sampled, check_labels
from .scene import SceneReaders

CONTEXT = 64        # px of context read around the pixels of a tile (the engine's DENSE_CONTEXT)
TILE = 512          # px: the largest side of a tile's own pixels
MAX_PIXELS = 3000   # pixels kept per polygon (seeded subsample beyond): large polygons must not dominate


@dataclass
class PixelSet:
    """Hypercolumns of labelled pixels. ``labels[i]``: the pixel's polygon's classes (multi-hot:
    the pixel is one of them); ``polygon[i]``: index of that polygon in the list given."""

    feats: dict[str, np.ndarray]      # modality -> [N, D_m] float32
    present: dict[str, np.ndarray]    # modality -> [N] bool: valid there
    labels: np.ndarray                # [N, K] float32 0/1
    polygon: np.ndarray               # [N] int
    classes: tuple[str, ...]
    counts: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    pix: np.ndarray | None = None     # [N, 2] (row, col) on the reference grid

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, idx: np.ndarray) -> "PixelSet":
        idx = np.asarray(idx, dtype=int)
        return PixelSet({m: f[idx] for m, f in self.feats.items()}, {m: p[idx] for m, p in self.present.items()},
                        self.labels[idx], self.polygon[idx], self.classes, dict(self.counts), list(self.warnings),
                        None if self.pix is None else self.pix[idx])

    def polygons_per_class(self) -> dict[str, int]:
        """Distinct polygons naming each class."""
        out = {}
        for k, c in enumerate(self.classes):
            out[c] = int(len(np.unique(self.polygon[self.labels[:, k] > 0])))
        return out

    def pixels_per_class(self) -> dict[str, int]:
        return {c: int(n) for c, n in zip(self.classes, self.labels.sum(0))}


def polygon_pixels(geom: dict[str, Any], transform: Affine, height: int, width: int) -> np.ndarray:
    """(row, col) [N, 2] of the grid pixels whose centre lies inside the polygon (all the pixels it
    touches when it is smaller than a pixel), inside the grid."""
    rings = geom["coordinates"] if geom["type"] == "Polygon" else [r for p in geom["coordinates"] for r in p]
    pts = np.concatenate([np.asarray(r, dtype=np.float64)[:, :2] for r in rings])
    cols, rows = (~transform) * (pts[:, 0], pts[:, 1])
    r0, r1 = max(0, math.floor(rows.min())), min(height, math.ceil(rows.max()))
    c0, c1 = max(0, math.floor(cols.min())), min(width, math.ceil(cols.max()))
    if r1 <= r0 or c1 <= c0:
        return np.empty((0, 2), int)
    local = transform * Affine.translation(c0, r0)
    inside = ~geometry_mask([geom], (r1 - r0, c1 - c0), local, all_touched=False)
    if not inside.any():
        inside = ~geometry_mask([geom], (r1 - r0, c1 - c0), local, all_touched=True)
    rr, cc = np.nonzero(inside)
    return np.stack([rr + r0, cc + c0], 1)


def _tiles(pix: np.ndarray) -> list[np.ndarray]:
    """Indices of the pixels [N, 2] grouped by the TILE x TILE tile of the grid they fall in: each
    group is read and encoded once, whichever polygons its pixels belong to."""
    key = pix[:, 0] // TILE * 1_000_000 + pix[:, 1] // TILE
    order = np.argsort(key, kind="stable")
    cuts = np.flatnonzero(np.diff(key[order])) + 1
    return np.split(order, cuts)


@torch.no_grad()
def tile_hypercolumns(model: MosaicModel, scene: SceneReaders, pix: np.ndarray, phase: int, n_levels: int
                      ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Hypercolumns [N, D_m] (bands, then the first ``n_levels`` stage outputs) and validity [N]
    per modality of the grid pixels ``pix`` [N, 2] (one tile), read with CONTEXT px around them
    on a lattice whose origin is ``phase`` modulo the encoders' output stride."""
    e = model.output_stride
    (rmin, cmin), (rmax, cmax) = pix.min(0), pix.max(0)
    r0 = rmin - CONTEXT - ((rmin - CONTEXT - phase) % e)
    c0 = cmin - CONTEXT - ((cmin - CONTEXT - phase) % e)
    nr = -(-(rmax + 1 + CONTEXT - r0) // e) * e
    nc = -(-(cmax + 1 + CONTEXT - c0) // e) * e
    rows = torch.from_numpy(pix[:, 0] - r0)
    cols = torch.from_numpy(pix[:, 1] - c0)
    feats, present = {}, {}
    for m in scene.readers:
        raw = scene.read(m, int(r0), int(c0), int(nr), int(nc))
        valid = np.isfinite(raw).all(0)
        x = torch.from_numpy(scene.normalise({m: raw})[m])
        enc = model.encoders[m]
        levels = [lv[0] for lv in enc.forward_levels(x[None], n_levels)]
        feats[m] = hypercolumns(x, levels, enc.level_strides, rows, cols).numpy()
        present[m] = valid[pix[:, 0] - r0, pix[:, 1] - c0]
    return feats, present


def extract_pixels(
    polygons: Sequence[LabelledPolygon],
    crs: str,
    scene: SceneReaders,
    model: MosaicModel,
    classes: Sequence[str],
    n_levels: int = 1,
    seed: int = 0,
    max_pixels: int = MAX_PIXELS,
    progress: Callable[[float], None] | None = None,
    is_cancelled: Callable[[], bool] | None = None,
) -> PixelSet:
    """The hypercolumns (bands and ``n_levels`` stage outputs) of the valid pixels inside every
    polygon (at most ``max_pixels`` each).

    Raises:
        ValueError: no polygon, unlabelled polygons or unknown labels; no polygon over valid pixels;
            a class whose polygons all lie outside the rasters or over no-data.
        InterruptedError: cancelled.
    """
    classes = tuple(classes)
    check_labels(polygons, classes)
    model.eval()
    grid = scene.grid
    rng = np.random.default_rng(seed)
    src_crs = CRS.from_user_input(crs)
    index = {c: k for k, c in enumerate(classes)}
    counts = {"polygons": len(polygons), "polygons_used": 0, "polygons_outside": 0, "polygons_invalid": 0,
              "polygons_nodata": 0, "pixels": 0, "pixels_subsampled_from": 0}
    pix_all, owner_all = [], []
    for pi, poly in enumerate(polygons):
        geom = poly.geometry
        if not (isinstance(geom, dict) and geom.get("type") in ("Polygon", "MultiPolygon") and geom.get("coordinates")):
            counts["polygons_invalid"] += 1
            continue
        if src_crs != grid.crs:
            geom = transform_geom(src_crs, grid.crs, geom)
        pix = polygon_pixels(geom, grid.transform, grid.height, grid.width)
        if len(pix) == 0:
            counts["polygons_outside"] += 1
            continue
        if len(pix) > max_pixels:
            counts["pixels_subsampled_from"] += len(pix)
            pix = pix[np.sort(rng.choice(len(pix), max_pixels, replace=False))]
        pix_all.append(pix)
        owner_all.append(np.full(len(pix), pi))
    feats: dict[str, list[np.ndarray]] = {m: [] for m in scene.readers}
    present: dict[str, list[np.ndarray]] = {m: [] for m in scene.readers}
    labels, owner, where = [], [], []
    if pix_all:
        pix_all, owner_all = np.concatenate(pix_all), np.concatenate(owner_all)
        hot = np.zeros((len(polygons), len(classes)), np.float32)
        for pi, poly in enumerate(polygons):
            hot[pi, [index[c] for c in poly.labels]] = 1
        tiles = _tiles(pix_all)
        for ti, idx in enumerate(tiles):
            if is_cancelled is not None and is_cancelled():
                raise InterruptedError("cancelled")
            f, p = tile_hypercolumns(model, scene, pix_all[idx], int(rng.integers(model.output_stride)), n_levels)
            ok = np.logical_or.reduce([p[m] for m in p])
            for m in scene.readers:
                feats[m].append(f[m][ok])
                present[m].append(p[m][ok])
            labels.append(hot[owner_all[idx][ok]])
            owner.append(owner_all[idx][ok])
            where.append(pix_all[idx][ok])
            if progress is not None:
                progress((ti + 1) / len(tiles))
        used = np.unique(np.concatenate(owner)) if owner else np.empty(0, int)
        counts["polygons_used"] = int(len(used))
        counts["polygons_nodata"] = int(len(np.unique(owner_all))) - int(len(used))
    if not labels or not sum(len(v) for v in labels):
        raise ValueError(f"no polygon covers valid pixels of the rasters ({counts['polygons_outside']} of "
                         f"{len(polygons)} lie outside them, {counts['polygons_nodata']} over no-data, "
                         f"{counts['polygons_invalid']} are not polygons): draw polygons over the scene, or check "
                         f"the label layer's CRS")
    y = np.concatenate(labels)
    check_every_class_sampled(polygons, classes, y, "pixel")
    counts["pixels"] = len(y)
    warnings = []
    if counts["polygons_outside"] or counts["polygons_nodata"]:
        warnings.append(f"{counts['polygons_outside']} polygon(s) outside the rasters and {counts['polygons_nodata']} "
                        f"over no-data were left out")
    return PixelSet({m: np.concatenate(v) for m, v in feats.items()},
                    {m: np.concatenate(v) for m, v in present.items()}, y, np.concatenate(owner), classes,
                    counts, warnings, np.concatenate(where))
