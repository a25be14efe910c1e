"""The engine's view of a scene, reused for training windows.

Windows for fine-tuning are read exactly as ``core.engine.run_scene`` reads them (same band
mapping, SAR units, reference grid, warped readers and normalisation), so a model learns
from the same numbers it later classifies.

Fine-tuning reads many small windows around the polygons. Through a warped reader (a layer
not on the metric grid, such as the Spain scene in EPSG:4326) each read costs GDAL's warper
about 0.4 s whatever its size, so reads go through a cache of grid tiles (``TILE`` px, each
read once per input, at most ``CACHE_TILES`` kept) and windows are cut from memory.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..data.normalize import normalize
from ..engine.align import Grid, reference_grid
from ..engine.band_reader import BandReader, on_grid
from ..engine.input_values import read_values
from ..engine.reflectance_offset import shifted_mean
from ..engine.request import LABEL
from ..engine.scene_inputs import open_input


TILE = 512
CACHE_TILES = 24  # 12 bands x 512^2 x 4 B = 12.6 MB a tile: at most about 300 MB of optical tiles


@dataclass
class SceneReaders:
    """Per-modality readers on the reference grid, and the card's normalisation."""

    grid: Grid
    readers: dict[str, BandReader]
    stats: dict[str, tuple[Any, Any]]
    patch: int
    warnings: list[str] = field(default_factory=list)
    _tiles: OrderedDict = field(default_factory=OrderedDict)

    def read(self, m: str, row0: int, col0: int, rows: int, cols: int) -> np.ndarray:
        """Raw float32 [C, rows, cols] of modality ``m``, NaN outside the inputs and for no-data,
        cut from cached grid tiles."""
        out = np.full((len(self.readers[m].indexes), rows, cols), np.nan, np.float32)
        r_lo, r_hi = max(0, row0), min(self.grid.height, row0 + rows)
        c_lo, c_hi = max(0, col0), min(self.grid.width, col0 + cols)
        for tr in range(r_lo // TILE, -(-r_hi // TILE)):
            for tc in range(c_lo // TILE, -(-c_hi // TILE)):
                tile = self._tile(m, tr, tc)
                a0, a1 = max(r_lo, tr * TILE), min(r_hi, tr * TILE + tile.shape[1])
                b0, b1 = max(c_lo, tc * TILE), min(c_hi, tc * TILE + tile.shape[2])
                if a1 > a0 and b1 > b0:
                    out[:, a0 - row0: a1 - row0, b0 - col0: b1 - col0] = \
                        tile[:, a0 - tr * TILE: a1 - tr * TILE, b0 - tc * TILE: b1 - tc * TILE]
        return out

    def _tile(self, m: str, tr: int, tc: int) -> np.ndarray:
        key = (m, tr, tc)
        if key in self._tiles:
            self._tiles.move_to_end(key)
            return self._tiles[key]
        rows = min(TILE, self.grid.height - tr * TILE)
        cols = min(TILE, self.grid.width - tc * TILE)
        tile = self.readers[m].read(tr * TILE, tc * TILE, rows, cols)
        self._tiles[key] = tile
        while len(self._tiles) > CACHE_TILES * len(self.readers):
            self._tiles.popitem(last=False)
        return tile

    def cached_area(self) -> tuple[int, int, int, int] | None:
        """(row0, col0, row1, col1) of the grid covered by the tiles read so far (None: none)."""
        if not self._tiles:
            return None
        trs = [k[1] for k in self._tiles]
        tcs = [k[2] for k in self._tiles]
        return (min(trs) * TILE, min(tcs) * TILE, min(self.grid.height, (max(trs) + 1) * TILE),
                min(self.grid.width, (max(tcs) + 1) * TILE))

    def read_window(self, row0: int, col0: int) -> dict[str, np.ndarray]:
        """Raw float32 [C, P, P] per modality, NaN outside the inputs and for no-data."""
        p = self.patch
        return {m: self.read(m, row0, col0, p, p) for m in self.readers}

    def normalise(self, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """As the engine does: card mean/std, no-data -> 0 (the band mean)."""
        return {m: normalize(a, m, *self.stats[m]) for m, a in raw.items()}

    def close(self) -> None:
        self._tiles.clear()
        for r in self.readers.values():
            r.close()


def open_scene(card: dict[str, Any], optical: str | None, sar: str | None,
               optical_bands: Sequence[str] | str | None = None, sar_bands: Sequence[str] | str | None = None,
               sar_units: str = "auto", optical_offset: float | None = None,
               optical_level: str = "auto") -> SceneReaders:
    """Readers for the model of ``card``; ValueError / FileNotFoundError name what does not fit.
    Bands, level, offset and SAR units are read as the engine reads them (``engine.input_values``)."""
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
            srcs[m] = open_input(p, LABEL[m])
        vals = read_values(srcs, need, {"s2": optical_bands, "s1": sar_bands}, inputs.get("s2", {}).get("mean"),
                           inputs.get("s2", {}).get("level"), optical_level, sar_units, optical_offset)
        maps, offset, to_db, warns = vals.maps, vals.offset, vals.to_db, vals.warnings
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
    stats["s2"] = (shifted_mean(stats["s2"][0], len(need["s2"]), offset), stats["s2"][1])
    return SceneReaders(grid, readers, stats, int(inputs.get("patch_size", 120)), warns)
