"""Unlabelled training windows cut from a co-registered S1 + S2 scene.

Contrastive terms need no labels, so real scenes add images where labels are scarce.
Both rasters are warped onto one metric grid (the scene's UTM zone at 10 m) with
rasterio's WarpedVRT, then cut into 120x120 windows; windows with more than
``max_nodata`` of missing pixels are skipped.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import rasterio
import torch
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import calculate_default_transform

from .bands import BEN19_CLASSES, S2_13_BANDS, S2_BANDS
from ..engine.align import utm_crs_for
from .normalize import normalize

class SceneWindows(torch.utils.data.Dataset):
    """Normalised unlabelled (s2, s1) windows of one scene, held in memory (small scenes only)."""

    def __init__(
        self,
        s2_path: str | Path,
        s1_path: str | Path,
        s2_file_bands: Sequence[str] = S2_13_BANDS,
        window: int = 120,
        stride: int = 60,
        max_nodata: float = 0.1,
        classes: Sequence[str] = BEN19_CLASSES,
    ) -> None:
        self.classes = tuple(classes)
        idx = [list(s2_file_bands).index(b) + 1 for b in S2_BANDS]
        with rasterio.open(s2_path) as s2src, rasterio.open(s1_path) as s1src:
            dst_crs = s2src.crs if s2src.crs.is_projected else utm_crs_for(s2src.bounds, s2src.crs)
            transform, width, height = calculate_default_transform(
                s2src.crs, dst_crs, s2src.width, s2src.height, *s2src.bounds, resolution=10.0
            )
            grid = dict(crs=dst_crs, transform=transform, width=width, height=height)
            with WarpedVRT(s2src, resampling=Resampling.bilinear, src_nodata=0, nodata=np.nan,
                           dtype="float32", **grid) as v:
                s2 = v.read(idx)
            with WarpedVRT(s1src, resampling=Resampling.bilinear, nodata=np.nan, dtype="float32", **grid) as v:
                s1 = v.read([1, 2])
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
        return {"s2": s2, "s1": s1, "label": torch.zeros(len(self.classes)),
                "labelled": torch.tensor(False), "index": torch.tensor(i)}


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
