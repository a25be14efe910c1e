"""Which band of an input file is which model band: named from everything GDAL exposes
about them, or from a list the user gives.

A Sentinel-2 stack reaches an analyst in many shapes: a GeoTIFF whose bands carry
descriptions (``B2``, ``"B4 (red)"``), the SAFE product through GDAL's Sentinel-2 driver
(band metadata ``BANDNAME`` and ``WAVELENGTH``), an ENVI or GDAL >= 3.10 file with central
wavelengths, or a VRT stacked with ``gdalbuildvrt -separate`` from one file per band
(``..._B8A.jp2``), whose bands have no description and come in file-name order (B8A last).
Reading a band in the wrong slot changes a third of a map without a word, so each band is
named from the first of these that names it, and the order is called a guess only when none
of them names any band (then a run needs the names given or confirmed: ``BandOrderUnknown``).

A band list (``B01,B02,-,...``; ``'-'`` marks a band to ignore; the presets ``S2-13`` =
B01..B08, B8A, B09, B10, B11, B12 with B10 ignored, ``S2-12`` = the same without B10) names
the bands in file order. A band the model needs and the file lacks is an error that names it;
so is a file band the model does not use unless the list marks it ignored.
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..data.bands import S2_13_BANDS

S2_13: tuple[str, ...] = S2_13_BANDS  # B01..B08, B8A, B09, B10, B11, B12
S2_12: tuple[str, ...] = tuple(b for b in S2_13 if b != "B10")
# presets: whole-stack band orders; B10 (cirrus, absent from L2A and unused by the models) is ignored
PRESETS: dict[str, tuple[str, ...]] = {"S2-13": tuple("-" if b == "B10" else b for b in S2_13), "S2-12": S2_12,
                                       "S1-VV-VH": ("VV", "VH")}
IGNORE = ("-", "", "ignore", "none")

# central wavelengths (nm) of the Sentinel-2 MSI bands (S2A and S2B differ by < 17 nm)
S2_WAVELENGTH_NM: dict[str, float] = {
    "B01": 443, "B02": 492, "B03": 560, "B04": 665, "B05": 704, "B06": 740, "B07": 781, "B08": 835,
    "B8A": 865, "B09": 945, "B10": 1375, "B11": 1612, "B12": 2195}
WAVELENGTH_TOLERANCE_NM = 15.0  # B08 (833-842 nm) and B8A (865 nm) stay apart

_S2_RE = re.compile(r"(?<![A-Za-z0-9])B0?(\d{1,2})(A?)(?![0-9])", re.IGNORECASE)
_S1_RE = re.compile(r"(?<![A-Za-z])(VV|VH|HH|HV)(?![A-Za-z])", re.IGNORECASE)
_NAME_KEYS = ("BANDNAME", "BAND_NAME", "BAND", "NAME", "LONG_NAME", "POLARISATION", "POLARIZATION")
_WAVELENGTH_KEYS = ("WAVELENGTH", "CENTRAL_WAVELENGTH", "CENTRAL_WAVELENGTH_NM", "CENTRAL_WAVELENGTH_UM")

# where a name came from, in the order they are trusted
DESCRIPTION, METADATA, WAVELENGTH, FILE_NAME, ORDER = (
    "band descriptions", "band metadata", "wavelengths", "band file names", "band order")


BAND_FILE_SUFFIXES = (".tif", ".tiff", ".jp2")  # single-band files a folder of band files may hold


def canonical_band(name: str) -> str | None:
    """'B2', 'b02', 'B2 (blue)', 's2_B8A.jp2' -> 'B02' / 'B8A'; 'VV_dB' -> 'VV'; else None."""
    if not name:
        return None
    m = _S2_RE.search(name)
    if m:
        num, a = int(m.group(1)), m.group(2).upper()
        if 1 <= num <= 12 and (not a or num == 8):
            return f"B{num}A" if a else f"B{num:02d}"
    m = _S1_RE.search(name)
    if m:
        return m.group(1).upper()
    return None


def band_for_wavelength(value: float, unit: str = "") -> str | None:
    """The Sentinel-2 band centred within 15 nm of ``value`` (nm, or micrometres when the unit
    says so or the value is below 30), else None."""
    unit = unit.strip().lower()
    nm = value * 1000 if unit in ("um", "µm", "micrometer", "micrometers", "micrometre", "micrometres", "micron") \
        or (not unit and value < 30) else value
    best = min(S2_WAVELENGTH_NM, key=lambda b: abs(S2_WAVELENGTH_NM[b] - nm))
    return best if abs(S2_WAVELENGTH_NM[best] - nm) <= WAVELENGTH_TOLERANCE_NM else None


@dataclass
class BandNames:
    """The name of each band of a file ('?' unknown) and where each came from."""

    names: list[str]
    sources: list[str]                                # per band: one of the constants above, '' if unknown
    notes: list[str] = field(default_factory=list)    # places that disagree, for the log

    @property
    def order_guessed(self) -> bool:
        """True when no band is named by the file: the names are a preset order for its band count."""
        return ORDER in self.sources

    @property
    def unknown(self) -> list[int]:
        """1-based bands without a name."""
        return [i + 1 for i, n in enumerate(self.names) if n == "?"]

    def read_from(self) -> str:
        """Where the names come from, in words ('band descriptions', 'band file names and band metadata')."""
        found = [s for s in (DESCRIPTION, METADATA, WAVELENGTH, FILE_NAME, ORDER) if s in self.sources]
        return " and ".join(found) or "nowhere"


def preset_order(count: int, modality: str) -> list[str] | None:
    """The usual band order of a stack of ``count`` bands without names, if there is one."""
    if modality == "s2" and count == 13:
        return list(S2_13)
    if modality == "s2" and count == 12:
        return list(S2_12)
    if modality == "s1" and count == 2:
        return ["VV", "VH"]
    return None


def name_bands(src, modality: str) -> BandNames:
    """Name every band of the open rasterio dataset ``src`` (``modality`` 's2' or 's1')."""
    count = src.count
    per_source = {DESCRIPTION: [canonical_band(d or "") for d in src.descriptions],
                  METADATA: [_name_from_tags(src, i) for i in range(1, count + 1)],
                  WAVELENGTH: [_band_from_wavelength_tags(src, i) if modality == "s2" else None
                               for i in range(1, count + 1)],
                  FILE_NAME: file_band_names(src)}
    names, sources, notes = [], [], []
    for i in range(count):
        found = [(s, v[i]) for s, v in per_source.items() if v[i]]
        if not found:
            names.append("?")
            sources.append("")
            continue
        names.append(found[0][1])
        sources.append(found[0][0])
        others = sorted({f"{v} ({s})" for s, v in found[1:] if v != found[0][1]})
        if others:
            notes.append(f"band {i + 1} is {found[0][1]} by its {found[0][0]} but {', '.join(others)}")
    if all(n == "?" for n in names):
        order = preset_order(count, modality)
        if order:
            return BandNames(order, [ORDER] * count, notes)
    return BandNames(names, sources, notes)


def _tags(src, bidx: int, ns: str | None = None) -> dict[str, str]:
    try:
        tags = src.tags(bidx, ns=ns) if ns else src.tags(bidx)
    except Exception:  # noqa: BLE001 - a driver without that domain
        return {}
    return {str(k).upper(): str(v) for k, v in tags.items()}


def _name_from_tags(src, bidx: int) -> str | None:
    tags = _tags(src, bidx)
    for key in _NAME_KEYS:
        if key in tags:
            name = canonical_band(tags[key])
            if name:
                return name
    return None


def _band_from_wavelength_tags(src, bidx: int) -> str | None:
    for tags in (_tags(src, bidx), _tags(src, bidx, "IMAGERY"), _tags(src, bidx, "ENVI")):
        unit = tags.get("WAVELENGTH_UNIT", tags.get("WAVELENGTH_UNITS", tags.get("WAVELENGTH UNITS", "")))
        for key in _WAVELENGTH_KEYS:
            if key in tags:
                try:
                    value = float(tags[key].split()[0])
                except (ValueError, IndexError):
                    continue
                band = band_for_wavelength(value, "um" if key.endswith("_UM") else unit)
                if band:
                    return band
    return None


def file_band_names(src) -> list[str | None]:
    """Per band, the band its source file's name gives (``T33UUU_..._B8A.jp2`` -> B8A): the
    files a VRT stacks, each feeding one band, or the file itself when it has one band."""
    count = src.count
    if src.driver == "VRT":
        sources = vrt_band_sources(src.name)
        if not sources:
            return [None] * count
        feeds = Counter(f for files in sources.values() for f in set(files))
        out: list[str | None] = []
        for i in range(1, count + 1):
            files = sources.get(i, [])
            names = {canonical_band(Path(f).stem) for f in files}
            ok = files and len(names) == 1 and all(feeds[f] == 1 for f in set(files))
            out.append(names.pop() if ok else None)
        return out
    if count == 1:
        return [canonical_band(Path(src.name).stem)]
    return [None] * count


def vrt_band_sources(path: str) -> dict[int, list[str]]:
    """band number -> the files it reads, from a VRT file's XML ({} when it cannot be parsed)."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return {}
    out: dict[int, list[str]] = {}
    for k, band in enumerate(root.iter("VRTRasterBand"), 1):
        number = int(band.get("band", k))
        files = [s.findtext("SourceFilename", "").strip() for s in band
                 if s.tag.endswith("Source") and s.find("SourceFilename") is not None]
        out[number] = [f for f in files if f]
    return out



def expand_bands(bands: Sequence[str] | str | None) -> list[str] | None:
    """An explicit band list (or a preset name) as canonical names, '-' for ignored bands."""
    if bands is None:
        return None
    if isinstance(bands, str):
        if bands.upper() in PRESETS:
            return list(PRESETS[bands.upper()])
        bands = [b.strip() for b in bands.split(",")]
    out = []
    for b in bands:
        if b.strip().lower() in IGNORE:
            out.append("-")
        elif b.upper() in PRESETS:
            out.extend(PRESETS[b.upper()])
        else:
            c = canonical_band(b)
            if c is None:
                raise ValueError(f"band name {b!r} is not a Sentinel-2 (B01..B12, B8A) or Sentinel-1 (VV, VH) "
                                 f"band; use '-' to ignore a band")
            out.append(c)
    return out


def as_typed(names: Sequence[str]) -> str:
    """A band list as a user would type it: a preset name (S2-13, S2-12) where it is one."""
    for preset, order in PRESETS.items():
        if tuple(names) == order:
            return preset
    return ",".join(names)


class BandOrderUnknown(ValueError):
    """The file names none of its bands: reading them in the usual order for their count would
    be a guess. ``guess`` is that order; ``message(field)`` names the field to type them in."""

    def __init__(self, what: str, path: str, modality: str, guess: list[str], wanted: Sequence[str]) -> None:
        self.what, self.path, self.modality, self.guess, self.wanted = what, path, modality, guess, list(wanted)
        super().__init__(self.message("the band list"))

    def preset(self) -> str:
        """The guess as a user would type it: a preset name, or the list."""
        return as_typed([b if b in self.wanted else "-" for b in self.guess])

    def message(self, field: str) -> str:
        return (f"{self.what} {self.path}: none of its {len(self.guess)} bands is named (no band descriptions, band "
                f"metadata, wavelengths or band file names), so reading them as {','.join(self.guess)} would be a "
                f"guess. Type the band names in file order in {field} ('-' = a band to ignore), e.g. "
                f"{self.preset()} if that is the file's order; the model needs {','.join(self.wanted)}")


@dataclass
class BandMapping:
    """Which file band (1-based) feeds each model band, in model order."""

    file_bands: list[str]        # per file band: canonical name or '-'
    indexes: list[int]           # 1-based file band per model band
    source: str                  # 'the band list' or where the names were read (``BandNames.read_from``)


def map_bands(src, modality: str, wanted: Sequence[str], explicit: Sequence[str] | str | None,
              what: str) -> BandMapping:
    """Map the bands of the open dataset ``src`` to the model's ``wanted`` bands, from the
    ``explicit`` list or else the names the file gives; errors name the band and the fix."""
    path, count = src.name, src.count
    names = expand_bands(explicit)
    source = "the band list"
    if names is None:
        named = name_bands(src, modality)
        if named.order_guessed:
            raise BandOrderUnknown(what, path, modality, named.names, wanted)
        if named.unknown:
            raise ValueError(
                f"{what} {path}: band(s) {named.unknown} have no recognisable name (descriptions: "
                f"{list(src.descriptions)}; no band metadata or band file name names them); give the band names "
                f"in file order, e.g. {','.join(wanted)} (or the preset S2-13 for a 13-band Sentinel-2 stack), "
                f"'-' to ignore a band")
        # the file names them: bands the model does not use are simply left out
        names, source = [n if n in wanted else "-" for n in named.names], named.read_from()
    if len(names) != count:
        raise ValueError(f"{what} {path} has {count} band(s) but the band list names {len(names)}: "
                         f"{','.join(names)}")
    dup = sorted({n for n in names if n != "-" and names.count(n) > 1})
    if dup:
        raise ValueError(f"{what} {path}: band(s) {', '.join(dup)} appear more than once in {names}")
    missing = [b for b in wanted if b not in names]
    if missing:
        raise ValueError(f"{what} {path} lacks band(s) {', '.join(missing)} that the model needs "
                         f"(file bands: {', '.join(names)}; model bands: {', '.join(wanted)})")
    extra = [f"{n} (band {i + 1})" for i, n in enumerate(names) if n != "-" and n not in wanted]
    if extra:
        fix = ",".join(n if n in wanted else "-" for n in names)
        raise ValueError(f"{what} {path} has band(s) the model does not use: {', '.join(extra)}; "
                         f"mark them ignored with '-' in the band list, e.g. {fix}")
    return BandMapping(names, [names.index(b) + 1 for b in wanted], source)


def model_band_names(src, modality: str, needed: Sequence[str]) -> tuple[list[str], list[str], BandNames]:
    """(file band names as a run without a band list would read them, '-' for the bands the
    model does not use; model bands not found; the ``BandNames`` behind them). Cheap (no
    pixels read), for a UI to show the mapping before a run."""
    named = name_bands(src, modality)
    shown = [n if (n in needed or n == "?") else "-" for n in named.names]
    return shown, [b for b in needed if b not in shown], named
