"""How a run reads its inputs' values: which file band is which, the optical processing level,
the baseline 04.00 reflectance offset, SAR in dB or linear power, and the value check.

One place for the scene engine (``plan.py``) and fine-tuning from polygons
(``fewshot/scene.py``): a model is fine-tuned on values read exactly as the engine reads them
when it classifies, and both say the same things when an input looks wrong.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import rasterio

from ..io.overwrite_guard import raster_files
from .align import Samples, detect_level, sar_is_linear
from .band_check import check_band_values
from .band_mapping import BandMapping, map_bands, name_bands
from .reflectance_offset import resolve_offset
from .request import LABEL


@dataclass
class InputValues:
    """What ``read_values`` decided for each opened input."""

    maps: dict[str, BandMapping]     # modality -> file bands in the model's order
    offset: float                    # DN subtracted from the optical bands
    to_db: bool                      # the SAR input is linear power, read in dB
    warnings: list[str] = field(default_factory=list)


def read_values(srcs: dict[str, Any], model_bands: dict[str, list[str]], explicit: dict[str, Sequence[str] | str | None],
                optical_mean: Sequence[float] | None, model_level: str | None, optical_level: str = "auto",
                sar_units: str = "auto", optical_offset: float | None = None) -> InputValues:
    """Map the bands of the open inputs ``srcs`` (modality -> rasterio dataset) onto the model's
    ``model_bands`` (``explicit``: the user's band lists), and decide the offset and SAR units.
    Raises ValueError with what to change; warnings say what the user should read."""
    warns: list[str] = []
    maps = {m: map_bands(src, m, model_bands[m], explicit.get(m), f"{LABEL[m]} raster") for m, src in srcs.items()}
    samples = Samples()  # one read of each input's sample for every check below
    offset = 0.0
    if "s2" in srcs:
        src = srcs["s2"]
        warns += _level_warnings(src, optical_level, model_level)
        offset, note = resolve_offset(optical_offset, raster_files(src), src.tags(),
                                      lambda: _darkest_sample(src, maps["s2"], model_bands["s2"], samples))
        if note:
            warns.append(note)
    for m, src in srcs.items():
        warns += check_band_values(src, maps[m].indexes, model_bands[m], offset if m == "s2" else 0.0,
                                   optical_mean if m == "s2" else None, LABEL[m], maps[m].source, samples)
    to_db = False
    if "s1" in srcs:
        units = sar_units
        if units == "auto":
            units = "linear" if sar_is_linear(srcs["s1"], maps["s1"].indexes, samples) else "db"
            if units == "linear":
                warns.append("the SAR input looks like linear power: converted to dB (10 log10); "
                             "set sar_units='db' if it already is")
        to_db = units == "linear"
    return InputValues(maps, offset, to_db, warns)


def _level_warnings(src, optical_level: str, model_level: str | None) -> list[str]:
    """Where the optical input's processing level (L1C/L2A) differs from the model's or is unknown."""
    lvl = optical_level.upper()
    if lvl == "AUTO":
        lvl = detect_level(src.name, src.tags(), name_bands(src, "s2").names)
    if model_level and lvl and lvl != model_level:
        return [f"the optical input is {lvl} but the model was trained on {model_level}: expect a domain shift "
                f"(top-of-atmosphere vs surface reflectance); prefer {model_level} data"]
    if model_level and not lvl:
        return [f"the processing level of the optical input is unknown; the model expects {model_level}"]
    return []


def _darkest_sample(src, mapping: BandMapping, model_bands: list[str], samples: Samples) -> np.ndarray:
    """A sample [bands, N] of the optical input's B02, B03, B04 and B08 (``reflectance_offset``)."""
    idx = [i for i in (mapping.indexes[model_bands.index(b)] for b in ("B02", "B03", "B04", "B08")
                       if b in model_bands) if i]
    try:
        if not idx:
            return np.empty((0, 0))
        samples.of(src, [i for i in mapping.indexes if i])  # every mapped band: the band check reads them next
        return samples.of(src, idx)
    except (rasterio.errors.RasterioError, rasterio.errors.RasterioIOError):  # a damaged file: the run's own reads say where, with the fix
        return np.empty((0, 0))
