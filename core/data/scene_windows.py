"""Unlabelled training windows cut from a co-registered S1 + S2 scene, or an S2-only one.

Contrastive terms need no labels, so real scenes add images where labels are scarce.
Each input is a raster or a folder of single-band files (Major-TOM, SSL4EO-S12, a SAFE
product's bands), stacked through a VRT; its bands are found by name as the scene engine finds
them (``engine.band_mapping``: never a guessed order). The optical input is read as the engine
reads it, too: the reflectance offset of processing baseline 04.00 and later is subtracted
(``engine.reflectance_offset``, from tags, a ``metadata.json`` beside the band files, or the
product name) and its processing level (L1C / L2A) is kept, so training and inference see the
same numbers. Both rasters are warped onto one metric grid (the scene's UTM zone at 10 m) with
rasterio's WarpedVRT, then cut into 120x120 windows; windows with more than ``max_nodata`` of
missing pixels are skipped.
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import rasterio
import torch
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import calculate_default_transform

from ..engine.align import build_band_vrt, detect_level, utm_crs_for
from ..engine.band_mapping import BAND_FILE_SUFFIXES, canonical_band, map_bands
from ..engine.reflectance_offset import detect_offset
from .bands import BEN19_CLASSES, S1_BANDS, S2_BANDS
from .normalize import normalize



@dataclass
class SceneBands:
    """One input of a training scene: what to read and how to read it."""

    path: str                 # the raster, or the VRT stacking a folder's band files
    indexes: list[int]        # 1-based bands of ``path``, in the model's band order
    offset: float             # digital numbers to subtract first (Sentinel-2 baseline >= 04.00)
    level: str | None         # 'L1C', 'L2A' or None (unknown; optical only)
    note: str                 # where the offset came from ('' when none applies)


def scene_bands(source: str | Path, modality: str, tmp: str, explicit: Sequence[str] | None = None) -> SceneBands:
    """``source`` (a raster, or a folder of one file per band) as training reads it; the VRT of
    a folder goes in ``tmp``. ``explicit``: the file's band names in order, for a raster that
    names none of its bands (``S2-13`` allowed)."""
    p = Path(source)
    wanted = list(S2_BANDS if modality == "s2" else S1_BANDS)
    meta: dict[str, Any] = {}
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix.lower() in BAND_FILE_SUFFIXES
                       and canonical_band(f.stem) in wanted)
        found = {canonical_band(f.stem) for f in files}
        if not set(wanted) <= found:
            raise ValueError(f"{p} has no band file for {', '.join(b for b in wanted if b not in found)} "
                             f"(a folder of band files needs one file per band, named like B02.tif or VV.tif)")
        path = build_band_vrt([str(f) for f in files], str(Path(tmp) / f"{modality}_{abs(hash(str(p)))}.vrt"))
        if (p / "metadata.json").is_file():
            meta = json.loads((p / "metadata.json").read_text())
        names = [str(f) for f in files]
    else:
        path, names = str(p), [str(p)]
    with rasterio.open(path) as src:
        mapping = map_bands(src, modality, wanted, explicit, f"{'optical' if modality == 's2' else 'SAR'} input {p}")
        tags = {**src.tags(), **{k: str(v) for k, v in meta.items() if isinstance(v, (str, int, float))}}
        band_names = [src.descriptions[i - 1] or "" for i in range(1, src.count + 1)]
    if modality != "s2":
        return SceneBands(path, mapping.indexes, 0.0, None, "")
    product = [*names, str(p), str(meta.get("PRODUCT_ID", ""))]
    offset, note = detect_offset(product, tags)
    level = detect_level(" ".join(product), tags, band_names)
    return SceneBands(path, mapping.indexes, offset or 0.0, level, note if offset else "")


class SceneWindows(torch.utils.data.Dataset):
    """Normalised unlabelled (s2, s1) windows of one scene, held in memory (small scenes only).

    ``level`` and ``offset`` say how the optical input was read (``scene_bands``). Without a SAR
    input (``s1_path`` None) the windows are optical only (``has_s1`` False): they feed the
    optical intra-modal term, and the SAR encoder never sees them (``MosaicModel.features``)."""

    def __init__(
        self,
        s2_path: str | Path,
        s1_path: str | Path | None,
        s2_file_bands: Sequence[str] | None = None,
        window: int = 120,
        stride: int = 60,
        max_nodata: float = 0.1,
        classes: Sequence[str] = BEN19_CLASSES,
    ) -> None:
        self.classes = tuple(classes)
        with tempfile.TemporaryDirectory(prefix="mosaic-scene-") as tmp:
            b2 = scene_bands(s2_path, "s2", tmp, s2_file_bands)
            b1 = scene_bands(s1_path, "s1", tmp) if s1_path is not None else None
            self.level, self.offset, self.note, self.has_s1 = b2.level, b2.offset, b2.note, b1 is not None
            with rasterio.open(b2.path) as s2src:
                dst_crs = s2src.crs if s2src.crs.is_projected else utm_crs_for(s2src.bounds, s2src.crs)
                transform, width, height = calculate_default_transform(
                    s2src.crs, dst_crs, s2src.width, s2src.height, *s2src.bounds, resolution=10.0
                )
                grid = dict(crs=dst_crs, transform=transform, width=width, height=height)
                with WarpedVRT(s2src, resampling=Resampling.bilinear, src_nodata=0, nodata=np.nan,
                               dtype="float32", **grid) as v:
                    s2 = v.read(b2.indexes) - np.float32(b2.offset)
            if b1 is not None:
                with rasterio.open(b1.path) as s1src, WarpedVRT(s1src, resampling=Resampling.bilinear, nodata=np.nan,
                                                                dtype="float32", **grid) as v:
                    s1 = v.read(b1.indexes)
            else:  # a placeholder the SAR encoder never sees
                s1 = np.zeros((len(S1_BANDS), height, width), np.float32)
        valid = np.isfinite(s2).all(0) & np.isfinite(s1).all(0)
        s2n, s1n = normalize(s2, "s2"), normalize(s1, "s1")
        self.windows: list[tuple[torch.Tensor, torch.Tensor]] = []
        for r in range(0, height - window + 1, stride):
            for c in range(0, width - window + 1, stride):
                if 1 - valid[r : r + window, c : c + window].mean() > max_nodata:
                    continue
                sl = np.s_[:, r : r + window, c : c + window]
                self.windows.append((torch.from_numpy(s2n[sl].copy()), torch.from_numpy(s1n[sl].copy())))
        if not self.windows:
            raise ValueError(f"no {window}x{window} window of {s2_path} has enough valid pixels")

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        s2, s1 = self.windows[i]
        return {"s2": s2, "s1": s1, "label": torch.zeros(len(self.classes)), "labelled": torch.tensor(False),
                "index": torch.tensor(i), "has_s2": torch.tensor(True), "has_s1": torch.tensor(self.has_s1)}


class PooledPatches(torch.utils.data.ConcatDataset):
    """Several patch datasets trained as one (e.g. reBEN patches + unlabelled scene windows)."""

    def __init__(self, parts: Sequence[torch.utils.data.Dataset]) -> None:
        super().__init__(parts)
        names = {tuple(p.classes) for p in parts}
        if len(names) != 1:
            raise ValueError("pooled datasets must share one class list")
        self.classes = names.pop()

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        item = dict(super().__getitem__(i))
        item["index"] = torch.tensor(i)
        return item
