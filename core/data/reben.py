"""Reader for the official BigEarthNet v2.0 (reBEN) folder layout.

Layout::

    ROOT/metadata.parquet
    ROOT/BigEarthNet-S2/<product>/<patch_id>/<patch_id>_B01.tif ... _B12.tif
    ROOT/BigEarthNet-S1/<product>/<s1_name>/<s1_name>_VV.tif, _VH.tif

S2 bands are stored at native resolution (120, 60 or 20 px) and resampled here to the
reBEN 120x120 grid (bilinear), so a sample is ``{'s2': [12,120,120], 's1': [2,120,120],
'label': [19], 'labelled': bool}``, normalised with the reBEN training statistics.
Georeferencing is not used: a third of the dev patches have none.
"""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import rasterio
import torch
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning

from .bands import BEN19_CLASSES, S1_BANDS, S2_BANDS, multi_hot
from .normalize import normalize

PATCH_SIZE = 120
SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class PatchRecord:
    """One row of metadata.parquet with the resolved band-file folders."""

    patch_id: str
    labels: tuple[str, ...]
    split: str
    s2_dir: Path
    s1_dir: Path | None
    s1_name: str | None


def _index_folders(top: Path) -> dict[str, Path]:
    """Map patch folder name -> path, two levels below ``top`` (product/patch)."""
    found: dict[str, Path] = {}
    if not top.is_dir():
        return found
    for product in os.scandir(top):
        if product.is_dir():
            for patch in os.scandir(product.path):
                if patch.is_dir():
                    found[patch.name] = Path(patch.path)
    return found


def read_metadata(root: str | Path) -> list[PatchRecord]:
    """Rows of ``root/metadata.parquet`` whose S2 folder exists on disk."""
    import pyarrow.parquet as pq

    root = Path(root)
    meta = root / "metadata.parquet"
    if not meta.is_file():
        raise FileNotFoundError(
            f"{meta} not found: point --data at a folder in reBEN layout "
            "(metadata.parquet, BigEarthNet-S2/, BigEarthNet-S1/)"
        )
    rows = pq.read_table(meta, columns=["patch_id", "labels", "split", "s1_name"]).to_pylist()
    s2 = _index_folders(root / "BigEarthNet-S2")
    s1 = _index_folders(root / "BigEarthNet-S1")
    records = []
    for r in rows:
        if r["patch_id"] not in s2:
            continue
        s1_name = r.get("s1_name")
        records.append(
            PatchRecord(
                patch_id=r["patch_id"],
                labels=tuple(r["labels"] or ()),
                split=r["split"],
                s2_dir=s2[r["patch_id"]],
                s1_dir=s1.get(s1_name) if s1_name else None,
                s1_name=s1_name,
            )
        )
    if not records:
        raise ValueError(f"no patch of {meta} has its S2 folder under {root / 'BigEarthNet-S2'}")
    return records


def _read_band(path: Path, size: int = PATCH_SIZE) -> np.ndarray:
    with warnings.catch_warnings():
        # a third of the dev patches carry no georeference; the reader never needs it
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        src = rasterio.open(path)
    with src:
        return src.read(1, out_shape=(size, size), resampling=Resampling.bilinear).astype(np.float32)


def _band_file(folder: Path, name: str, band: str, patch: str) -> Path:
    path = folder / f"{name}_{band}.tif"
    if not path.is_file():
        raise FileNotFoundError(f"reBEN patch {patch} has no {band} band file ({path}): download the patch "
                                f"again, or leave it out of metadata.parquet")
    return path


def read_s2(record: PatchRecord, bands: Sequence[str] = S2_BANDS) -> np.ndarray:
    """S2 bands of one patch resampled to 120x120, reflectance x 10000, float32 [C,H,W]."""
    return np.stack([_read_band(_band_file(record.s2_dir, record.patch_id, b, record.patch_id)) for b in bands])


def read_s1(record: PatchRecord, bands: Sequence[str] = S1_BANDS) -> np.ndarray:
    """S1 VV/VH of one patch in dB, float32 [2,H,W]."""
    if record.s1_dir is None:
        raise FileNotFoundError(f"no Sentinel-1 folder for patch {record.patch_id} ({record.s1_name})")
    return np.stack([_read_band(_band_file(record.s1_dir, record.s1_name, b, record.patch_id)) for b in bands])


def labelled_subset(n: int, fraction: float, seed: int) -> np.ndarray:
    """Seeded choice of ceil(fraction * n) indices (at least one) of ``n`` training patches."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"label fraction must be in (0, 1], got {fraction}")
    k = max(1, math.ceil(fraction * n))
    return np.sort(np.random.default_rng(seed).permutation(n)[:k])


class ReBenPatches(torch.utils.data.Dataset):
    """Patches of one or more splits of a reBEN folder, held in memory after first read.

    Args:
        root: folder in reBEN layout.
        splits: which splits to include.
        label_fraction: share of the patches whose labels are used (seeded); the rest
            are returned with ``labelled=False`` so contrastive terms can still use them.
        seed: seed of the labelled subset.
        classes: class names (order of the label vector).
    """

    def __init__(
        self,
        root: str | Path,
        splits: Sequence[str] = ("train",),
        label_fraction: float = 1.0,
        seed: int = 0,
        classes: Sequence[str] = BEN19_CLASSES,
    ) -> None:
        bad = [s for s in splits if s not in SPLITS]
        if bad:
            raise ValueError(f"unknown split(s) {bad}; choose from {SPLITS}")
        self.root = Path(root)
        self.classes = tuple(classes)
        self.records = [r for r in read_metadata(root) if r.split in splits]
        if not self.records:
            raise ValueError(f"no patch of split(s) {list(splits)} in {root}")
        chosen = labelled_subset(len(self.records), label_fraction, seed)
        self.labelled = np.zeros(len(self.records), dtype=bool)
        self.labelled[chosen] = True
        self.labels = torch.tensor(
            [multi_hot([x for x in r.labels if x in self.classes], self.classes) for r in self.records]
        )
        self._cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def __len__(self) -> int:
        return len(self.records)

    def images(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised (s2, s1) tensors of patch ``i``; NaN / nodata become 0 (the mean)."""
        if i not in self._cache:
            rec = self.records[i]
            s2 = torch.from_numpy(normalize(read_s2(rec), "s2"))
            s1 = torch.from_numpy(normalize(read_s1(rec), "s1"))
            self._cache[i] = (s2, s1)
        return self._cache[i]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        s2, s1 = self.images(i)
        return {
            "s2": s2,
            "s1": s1,
            "label": self.labels[i],
            "labelled": torch.tensor(bool(self.labelled[i])),
            "index": torch.tensor(i),
        }
