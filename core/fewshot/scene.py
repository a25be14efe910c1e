"""The engine's view of a scene, reused for training windows.

Windows for fine-tuning are read exactly as ``core.engine.run_scene`` reads them (same band
mapping, SAR units, reference grid, warped readers and normalisation), so a model learns
from the same numbers it later classifies.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import rasterio

from ..data.normalize import normalize
from ..engine.align import Grid, map_bands, reference_grid, sar_is_linear
from ..engine.band_reader import BandReader, on_grid


@dataclass
class SceneReaders:
    """Per-modality readers on the reference grid, and the card's normalisation."""

    grid: Grid
    readers: dict[str, BandReader]
    stats: dict[str, tuple[Any, Any]]
    patch: int
    warnings: list[str] = field(default_factory=list)

    def read_window(self, row0: int, col0: int) -> dict[str, np.ndarray]:
        """Raw float32 [C, P, P] per modality, NaN outside the inputs and for no-data."""
        p = self.patch
        return {m: r.read(row0, col0, p, p) for m, r in self.readers.items()}

    def normalise(self, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """As the engine does: card mean/std, no-data -> 0 (the band mean)."""
        return {m: normalize(a, m, *self.stats[m]) for m, a in raw.items()}

    def close(self) -> None:
        for r in self.readers.values():
            r.close()


def open_scene(card: dict[str, Any], optical: str | None, sar: str | None,
               optical_bands: Sequence[str] | str | None = None, sar_bands: Sequence[str] | str | None = None,
               sar_units: str = "auto") -> SceneReaders:
    """Readers for the model of ``card``; ValueError names what does not fit."""
    arch = card.get("architecture", {})
    inputs = card.get("inputs", {})
    modalities = list(arch.get("modalities", ["s2", "s1"]))
    need = {"s2": list(arch.get("s2_bands", [])), "s1": list(arch.get("s1_bands", []))}
    given = {m: p for m, p in (("s2", optical), ("s1", sar)) if p}
    if not given:
        raise ValueError("give an optical (Sentinel-2) and/or a SAR (Sentinel-1) raster")
    for m in given:
        if m not in modalities:
            raise ValueError(f"the model has no {m} encoder (it takes {modalities})")
    srcs = {}
    try:
        for m, p in given.items():
            srcs[m] = rasterio.open(p)
        maps = {m: map_bands(src.name, src.count, src.descriptions, need[m],
                             optical_bands if m == "s2" else sar_bands,
                             "optical raster" if m == "s2" else "SAR raster") for m, src in srcs.items()}
        warns: list[str] = []
        to_db = False
        if "s1" in srcs:
            units = sar_units
            if units == "auto":
                units = "linear" if sar_is_linear(srcs["s1"], maps["s1"].indexes) else "db"
                if units == "linear":
                    warns.append("the SAR input looks like linear power: converted to dB (10 log10)")
            to_db = units == "linear"
        primary = srcs.get("s2") or srcs["s1"]
        others = [s for s in srcs.values() if s is not primary]
        pixel = float(inputs.get("pixel_size_m", 10))
        grid, native = reference_grid(primary, others, pixel)
        readers = {m: BandReader(src.name, maps[m].indexes, grid, on_grid(src, grid),
                                 to_db=to_db and m == "s1") for m, src in srcs.items()}
    finally:
        for s in srcs.values():
            s.close()
    stats = {m: (inputs.get(m, {}).get("mean"), inputs.get(m, {}).get("std")) for m in ("s2", "s1")}
    return SceneReaders(grid, readers, stats, int(inputs.get("patch_size", 120)), warns)
