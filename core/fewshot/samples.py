"""Training windows from labelled polygons.

A polygon is a GeoJSON-like geometry dict in some CRS plus a list of class names
(multi-label). Windows of the model's size are placed on the engine's reference grid
under and around each polygon: one centred on it, the others centred on random pixels
inside it, jittered by up to a quarter window so the context around small polygons varies,
and shifted inside the scene where they would reach past its edge.
Each window gets its polygon's labels. Windows outside the rasters or mostly no-data are
skipped and counted, never silently used.

The labels of a polygon are taken as the complete label set of its area: a class not
named is a negative for that window (the convention of training-area layers).
"""
from __future__ import annotations

import difflib
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from rasterio.crs import CRS
from rasterio.features import geometry_mask
from rasterio.transform import Affine
from rasterio.warp import transform_geom

from .scene import SceneReaders

MAX_MASK_SIDE = 1024  # masks of larger polygons are computed on a coarser grid


@dataclass
class LabelledPolygon:
    """One training area: geometry (GeoJSON dict), its class names, and an id for messages."""

    geometry: dict[str, Any]
    labels: list[str]
    fid: Any = None


def parse_labels(text: Any, separator: str = ";") -> list[str]:
    """``'Arable land; Orchards'`` -> ``['Arable land', 'Orchards']``; empty and duplicate names dropped."""
    if text is None:
        return []
    if isinstance(text, (list, tuple)):
        parts = [str(t) for t in text]
    else:
        parts = str(text).split(separator) if separator else [str(text)]
    out: list[str] = []
    for p in parts:
        p = " ".join(p.split())
        if p and p not in out:
            out.append(p)
    return out


def label_hash(polygons: Sequence[LabelledPolygon], crs: str) -> str:
    """sha256 of the canonical JSON of (geometry, sorted labels), sorted, with the CRS:
    the same labels give the same hash whatever the feature order."""
    items = sorted(json.dumps([p.geometry, sorted(p.labels)], sort_keys=True, separators=(",", ":"))
                   for p in polygons)
    blob = json.dumps({"crs": str(crs), "polygons": items}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass
class SampleSet:
    """Normalised windows with multi-hot labels; ``polygon[i]`` = index of the window's polygon."""

    s2: np.ndarray | None
    s1: np.ndarray | None
    labels: np.ndarray
    polygon: np.ndarray
    classes: tuple[str, ...]
    origins: list[tuple[int, int]]
    counts: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def per_class(self) -> dict[str, int]:
        return {c: int(n) for c, n in zip(self.classes, self.labels.sum(0))}

    def subset(self, idx: np.ndarray) -> "SampleSet":
        idx = np.asarray(idx, dtype=int)
        return SampleSet(None if self.s2 is None else self.s2[idx], None if self.s1 is None else self.s1[idx],
                         self.labels[idx], self.polygon[idx], self.classes, [self.origins[i] for i in idx],
                         dict(self.counts), list(self.warnings))


class ArrayPatches(torch.utils.data.Dataset):
    """A torch dataset over in-memory windows, in the training loop's sample format."""

    def __init__(self, s2: np.ndarray | None, s1: np.ndarray | None, labels: np.ndarray | None,
                 classes: Sequence[str], labelled: bool = True) -> None:
        self.classes = tuple(classes)
        n = len(s2) if s2 is not None else len(s1)
        self.s2 = torch.from_numpy(np.ascontiguousarray(s2)) if s2 is not None else None
        self.s1 = torch.from_numpy(np.ascontiguousarray(s1)) if s1 is not None else None
        self.labels = torch.from_numpy(labels.astype(np.float32)) if labels is not None else torch.zeros(n, len(classes))
        self.labelled = labelled
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        item = {"label": self.labels[i], "labelled": torch.tensor(self.labelled), "index": torch.tensor(i)}
        if self.s2 is not None:
            item["s2"] = self.s2[i]
        if self.s1 is not None:
            item["s1"] = self.s1[i]
        return item


def _key(name: str) -> str:
    return " ".join(name.casefold().split())


def match_known_classes(polygons: Sequence[LabelledPolygon], known: Sequence[str]) -> list[LabelledPolygon]:
    """The polygons with each label spelled as the class it names: a known class (the model's or
    the scheme's) matched whatever its case and spacing ("arable  LAND" is "Arable land"), a new
    class as it is first written. ValueError for a new label that looks like a known class (a
    typo would silently add a class beside the one meant): "Arable lnd" names the closest one."""
    spelled = {_key(k): k for k in known}
    near_keys = list(spelled)
    where: dict[str, list[str]] = {}
    for p in polygons:
        for name in p.labels:
            where.setdefault(name, []).append(str(p.fid))
    for name, fids in where.items():
        k = _key(name)
        if k in spelled:
            continue
        close = difflib.get_close_matches(k, near_keys, n=1, cutoff=0.8)
        if close:
            raise ValueError(f"label '{name}' (polygon(s) {', '.join(fids[:10])}{'…' if len(fids) > 10 else ''}) is "
                             f"not a known class but looks like '{spelled[close[0]]}': correct the label, or give "
                             f"the new class a name that is not so close to an existing one")
        spelled[k] = name  # a new class, spelled as first written; its other spellings join it
    return [LabelledPolygon(p.geometry, list(dict.fromkeys(spelled[_key(n)] for n in p.labels)), p.fid)
            for p in polygons]


def check_labels(polygons: Sequence[LabelledPolygon], classes: Sequence[str]) -> None:
    """ValueError for polygons without a label and for labels outside ``classes``."""
    if not polygons:
        raise ValueError("no labelled polygon: draw some, or choose a layer that has features")
    empty = [str(p.fid) for p in polygons if not p.labels]
    if empty:
        raise ValueError(f"{len(empty)} polygon(s) have labels that name no class (feature id(s) "
                         f"{', '.join(empty[:10])}{'…' if len(empty) > 10 else ''}): give each polygon at least "
                         f"one class name, or delete it")
    known = set(classes)
    for p in polygons:
        for name in p.labels:
            if name not in known:
                near = difflib.get_close_matches(name, list(classes), n=1)
                hint = f"; did you mean '{near[0]}'?" if near else ""
                raise ValueError(f"polygon {p.fid}: label '{name}' names no class of the scheme{hint}")


def check_every_class_sampled(polygons: Sequence[LabelledPolygon], classes: Sequence[str], y: np.ndarray,
                              what: str) -> None:
    """ValueError naming the classes the polygons name but no sample ``y`` [N, K] (multi-hot) holds."""
    named = sorted({c for poly in polygons for c in poly.labels}, key=list(classes).index)
    empty = [c for c in named if y[:, list(classes).index(c)].sum() == 0]
    if empty:
        raise ValueError(f"class(es) {', '.join(repr(c) for c in empty)} have no valid {what} under their polygons: "
                         f"they lie outside the rasters or over no-data; draw them over the scene")


def _pixel_geometry(geom: dict[str, Any], inv: Affine) -> list[np.ndarray]:
    """Exterior + interior rings in (col, row) pixel coordinates, flattened."""
    rings = []
    polys = geom["coordinates"] if geom["type"] == "MultiPolygon" else [geom["coordinates"]]
    for poly in polys:
        for ring in poly:
            a = np.asarray(ring, dtype=np.float64)[:, :2]
            cols, rows = inv * (a[:, 0], a[:, 1])
            rings.append(np.stack([cols, rows], 1))
    return rings


def _inside_pixels(geom: dict[str, Any], grid_transform: Affine) -> np.ndarray:
    """(row, col) of grid pixels covered by the polygon (all touched for tiny ones); may lie off-grid."""
    inv = ~grid_transform
    rings = _pixel_geometry(geom, inv)
    pts = np.concatenate(rings)
    r0, r1 = math.floor(pts[:, 1].min()), math.ceil(pts[:, 1].max())
    c0, c1 = math.floor(pts[:, 0].min()), math.ceil(pts[:, 0].max())
    h, w = max(1, r1 - r0), max(1, c1 - c0)
    step = max(1, math.ceil(max(h, w) / MAX_MASK_SIDE))
    local = grid_transform * Affine.translation(c0, r0) * Affine.scale(step)
    shape = (max(1, math.ceil(h / step)), max(1, math.ceil(w / step)))
    inside = ~geometry_mask([geom], shape, local, all_touched=False)
    if not inside.any():
        inside = ~geometry_mask([geom], shape, local, all_touched=True)
    rr, cc = np.nonzero(inside)
    return np.stack([r0 + rr * step + step // 2, c0 + cc * step + step // 2], 1)


def _geometry_type_ok(geom: dict[str, Any]) -> bool:
    return isinstance(geom, dict) and geom.get("type") in ("Polygon", "MultiPolygon") and bool(geom.get("coordinates"))


def extract_samples(
    polygons: Sequence[LabelledPolygon],
    crs: str,
    scene: SceneReaders,
    classes: Sequence[str],
    windows_per_polygon: int = 8,
    max_nodata: float = 0.5,
    seed: int = 0,
    min_windows: int = 4,
    progress=None,
    is_cancelled=None,
) -> SampleSet:
    """Labelled windows of every polygon, read through the engine's readers.

    Args:
        polygons: the training areas, in ``crs`` (reprojected to the reference grid here).
        classes: the class list of the model to train (label vector order).
        windows_per_polygon: windows per polygon (one centred, the rest jittered inside it).
        max_nodata: a window with a larger share of no-data pixels in any input is skipped.

    Raises:
        ValueError: no polygon, unlabelled polygons, unknown labels, no polygon over the
            rasters, a class without any usable window, or fewer than ``min_windows`` windows.
    """
    classes = tuple(classes)
    check_labels(polygons, classes)
    grid = scene.grid
    p = scene.patch
    rng = np.random.default_rng(seed)
    src_crs = CRS.from_user_input(crs)
    counts = {"polygons": len(polygons), "polygons_used": 0, "polygons_outside": 0, "polygons_invalid": 0,
              "windows": 0, "skipped_outside": 0, "skipped_nodata": 0}
    s2, s1, labels, owner, origins = [], [], [], [], []
    index = {c: k for k, c in enumerate(classes)}
    for pi, poly in enumerate(polygons):
        if is_cancelled is not None and is_cancelled():
            raise InterruptedError("cancelled")
        if not _geometry_type_ok(poly.geometry):
            counts["polygons_invalid"] += 1
            continue
        geom = transform_geom(src_crs, grid.crs, poly.geometry) if src_crs != grid.crs else poly.geometry
        pix = _inside_pixels(geom, grid.transform)
        on_grid = pix[(pix[:, 0] >= 0) & (pix[:, 0] < grid.height) & (pix[:, 1] >= 0) & (pix[:, 1] < grid.width)]
        if len(on_grid) == 0:
            counts["polygons_outside"] += 1
            continue
        centres = [tuple(np.round(on_grid.mean(0)).astype(int))]
        for _ in range(max(0, windows_per_polygon - 1)):
            r, c = on_grid[rng.integers(len(on_grid))]
            jr, jc = rng.integers(-(p // 4), p // 4 + 1, size=2)
            centres.append((int(r + jr), int(c + jc)))
        used = 0
        seen: set[tuple[int, int]] = set()
        hot = np.zeros(len(classes), np.float32)
        hot[[index[c] for c in poly.labels]] = 1
        for r, c in centres:
            # inside the grid where it is larger than a window: a window reaching past the scene
            # would teach the model what padding looks like (a class invented at the scene's edge)
            row0 = min(max(int(r) - p // 2, 0), max(0, grid.height - p))
            col0 = min(max(int(c) - p // 2, 0), max(0, grid.width - p))
            if (row0, col0) in seen:
                continue
            seen.add((row0, col0))
            if row0 + p <= 0 or col0 + p <= 0 or row0 >= grid.height or col0 >= grid.width:
                counts["skipped_outside"] += 1
                continue
            raw = scene.read_window(row0, col0)
            bad = max(float(np.isnan(a).any(0).mean()) for a in raw.values())
            if bad > max_nodata:
                counts["skipped_nodata"] += 1
                continue
            x = scene.normalise(raw)
            if "s2" in x:
                s2.append(x["s2"])
            if "s1" in x:
                s1.append(x["s1"])
            labels.append(hot)
            owner.append(pi)
            origins.append((row0, col0))
            used += 1
        if used:
            counts["polygons_used"] += 1
        if progress is not None:
            progress((pi + 1) / len(polygons))
    counts["windows"] = len(labels)
    if counts["polygons_used"] == 0:
        if counts["polygons_outside"] + counts["polygons_invalid"] == len(polygons):
            raise ValueError(f"no polygon overlaps the rasters ({counts['polygons_outside']} of {len(polygons)} lie "
                             f"outside them, {counts['polygons_invalid']} are not polygons): draw polygons over "
                             f"the scene, or check the label layer's CRS")
        raise ValueError(f"every window under the polygons is outside the rasters or mostly no-data "
                         f"({counts['skipped_outside']} outside, {counts['skipped_nodata']} no-data)")
    y = np.stack(labels)
    check_every_class_sampled(polygons, classes, y, "window")
    if len(y) < min_windows:
        raise ValueError(f"only {len(y)} usable window(s) (at least {min_windows} needed): draw more or larger "
                         f"polygons, or raise the windows per polygon")
    warnings = []
    if counts["skipped_outside"] or counts["skipped_nodata"] or counts["polygons_outside"]:
        warnings.append(f"skipped {counts['skipped_outside']} window(s) outside the rasters, "
                        f"{counts['skipped_nodata']} mostly no-data, {counts['polygons_outside']} polygon(s) "
                        f"outside the rasters")
    return SampleSet(np.stack(s2) if s2 else None, np.stack(s1) if s1 else None, y, np.asarray(owner),
                     classes, origins, counts, warnings)


def unlabelled_windows(scene: SceneReaders, limit: int = 64, stride: int | None = None, max_nodata: float = 0.1,
                       seed: int = 0) -> dict[str, np.ndarray]:
    """Normalised windows on a regular grid (at most ``limit``, seeded), for the contrastive
    terms: unlabelled images of the very scene being labelled, from the area around the
    polygons that was read already (``SceneReaders.cached_area``; the whole scene when none)."""
    grid, p = scene.grid, scene.patch
    stride = stride or p // 2
    r_lo, c_lo, r_hi, c_hi = scene.cached_area() or (0, 0, grid.height, grid.width)
    origins = [(r, c) for r in range(r_lo, max(r_lo + 1, r_hi - p + 1), stride)
               for c in range(c_lo, max(c_lo + 1, c_hi - p + 1), stride)]
    order = np.random.default_rng(seed).permutation(len(origins))
    out: dict[str, list[np.ndarray]] = {m: [] for m in scene.readers}
    for i in order:
        if len(next(iter(out.values()))) >= limit:
            break
        raw = scene.read_window(*origins[i])
        if max(float(np.isnan(a).any(0).mean()) for a in raw.values()) > max_nodata:
            continue
        for m, a in scene.normalise(raw).items():
            out[m].append(a)
    return {m: np.stack(v) for m, v in out.items() if v}


def split_by_polygon(samples: SampleSet, share: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) window indices; whole polygons go to validation (no leakage between
    overlapping windows), and every class keeps at least one training polygon."""
    polys = np.unique(samples.polygon)
    if share <= 0 or len(polys) < 2:
        return np.arange(len(samples)), np.array([], dtype=int)
    poly_classes = {int(q): set(np.flatnonzero(samples.labels[samples.polygon == q].max(0))) for q in polys}
    train_count = np.zeros(len(samples.classes), int)
    for cl in poly_classes.values():
        for k in cl:
            train_count[k] += 1
    target = max(1, int(round(share * len(polys))))
    val: list[int] = []
    for q in np.random.default_rng(seed).permutation(polys):
        if len(val) >= target:
            break
        cl = poly_classes[int(q)]
        if all(train_count[k] > 1 for k in cl):
            val.append(int(q))
            for k in cl:
                train_count[k] -= 1
    is_val = np.isin(samples.polygon, val)
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)
