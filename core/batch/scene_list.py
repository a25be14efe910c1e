"""The scenes of a batch job, from a CSV list or a local STAC catalog / ItemCollection.

CSV: a header with ``optical``, ``sar`` and ``name`` (``name`` optional, ``datetime`` too); one
scene per line. An input is a raster, a folder of one file per band (a Sentinel-2 product's
JPEG 2000 bands, Major-TOM, SSL4EO-S12), or empty for a scene without that modality. Relative
paths are read from the list file's folder. STAC inputs: ``stac_scenes``.
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..engine.band_mapping import BAND_FILE_SUFFIXES, canonical_band

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,120}$")
_ACQUIRED = re.compile(r"_(\d{8}T\d{6})_")  # Sentinel product names: ..._20220706T085611_...


@dataclass(frozen=True)
class SceneEntry:
    """One scene to process: its name (the output files' stem) and its inputs, each a list of
    files (one multi-band raster, or one file per band)."""

    name: str
    optical: tuple[str, ...] = ()
    sar: tuple[str, ...] = ()
    datetime: str | None = None      # ISO 8601 acquisition time, when known
    optical_bands: tuple[str, ...] | None = None  # band names in file order, when the list says them (STAC)
    sar_bands: tuple[str, ...] | None = None
    extra: dict = field(default_factory=dict, compare=False, hash=False)  # e.g. the STAC item's properties

    def input_files(self) -> list[str]:
        return [*self.optical, *self.sar]


def expand_input(value: str, base: Path) -> tuple[str, ...]:
    """A CSV cell as the files of one input: a raster, or the band files of a folder."""
    value = value.strip()
    if not value or value == "-":
        return ()
    p = Path(value).expanduser()
    p = p if p.is_absolute() else base / p
    if p.is_dir():  # the band files only: a folder may also hold masks, previews, metadata
        files = sorted(str(f.resolve()) for f in p.iterdir()
                       if f.suffix.lower() in (*BAND_FILE_SUFFIXES, ".vrt") and canonical_band(f.stem) is not None)
        if not files:
            raise ValueError(f"{p} is a folder without band files (.tif, .jp2 or .vrt named by band: B04.tif, "
                             f"vv.tif, ...)")
        return tuple(files)
    return (str(p.resolve()),)


def acquired_from_name(files: tuple[str, ...]) -> str | None:
    """The acquisition time in a Sentinel product name, as ISO 8601 (None when absent)."""
    for f in files:
        m = _ACQUIRED.search(f)
        if m:
            s = m.group(1)
            return f"{s[0:4]}-{s[4:6]}-{s[6:8]}T{s[9:11]}:{s[11:13]}:{s[13:15]}Z"
    return None


def check_names(scenes: list[SceneEntry], source: str) -> list[SceneEntry]:
    """ValueError for names that cannot be file names, repeated names, or an empty list."""
    if not scenes:
        raise ValueError(f"{source} lists no scene")
    seen: dict[str, int] = {}
    for i, s in enumerate(scenes, 1):
        if not _NAME.match(s.name):
            raise ValueError(f"{source}, scene {i}: name {s.name!r} is not usable as a file name (letters, digits, "
                             f". _ -, at most 121 characters)")
        if s.name in seen:
            raise ValueError(f"{source}: the name {s.name!r} is given to scenes {seen[s.name]} and {i}; names must "
                             f"be unique (they name the output files)")
        seen[s.name] = i
        if not s.optical and not s.sar:
            raise ValueError(f"{source}, scene {s.name!r}: neither an optical nor a SAR input")
    return scenes


def csv_scenes(path: str | Path) -> list[SceneEntry]:
    """The scenes of a CSV list (see the module docstring)."""
    path = Path(path)
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path} has no scene line under its header")
    header = {k.strip().lower() for k in rows[0] if k}
    if not {"optical", "sar"} & header:
        raise ValueError(f"{path}: the header must name the columns optical and/or sar (and name), got "
                         f"{sorted(header)}")
    out = []
    for i, row in enumerate(rows, 1):
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
        try:
            optical = expand_input(row.get("optical", ""), path.parent)
            sar = expand_input(row.get("sar", ""), path.parent)
        except ValueError as e:
            raise ValueError(f"{path}, line {i + 1}: {e}") from None
        first = (optical or sar or ("",))[0]
        name = row.get("name") or Path(first).stem
        out.append(SceneEntry(name, optical, sar, row.get("datetime") or acquired_from_name(optical + sar)))
    return check_names(out, str(path))


def read_scenes(path: str | Path) -> list[SceneEntry]:
    """Scenes from a CSV list (``.csv``, ``.txt``) or a STAC catalog / collection / ItemCollection
    (``.json``)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"scene list not found: {p}")
    if p.suffix.lower() == ".json":
        from .stac_input import stac_scenes

        return check_names(stac_scenes(p), str(p))
    return csv_scenes(p)
