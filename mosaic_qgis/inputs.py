"""From QGIS layers and text fields to what ``core.engine`` takes: paths, band lists, a model.

Shared by the Processing algorithms and the dock panel.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from qgis.core import QgsRasterLayer

from .models import default_model_path, list_models


def parse_band_list(text: str | None) -> list[str] | None:
    """``"B01, B02 ,-"`` -> ``["B01", "B02", "-"]``; empty -> None (guess from band descriptions).

    Presets the engine knows (``S2-13``, ``S2-12``) pass through as one item.
    """
    names = [part.strip() for part in re.split(r"[,;\s]+", text or "") if part.strip()]
    return names or None


def unreadable_raster(value: Any) -> str | None:
    """Why a raster parameter given as a path did not load, when QGIS would only say "not found":
    the file is there, but GDAL cannot read it as a raster. None when that is not the case."""
    if not isinstance(value, str) or not value.strip() or not Path(value).is_file():
        return None
    from osgeo import gdal

    gdal.PushErrorHandler("CPLQuietErrorHandler")
    try:
        ds = gdal.OpenEx(value, gdal.OF_RASTER)
        why = gdal.GetLastErrorMsg().strip()
    except RuntimeError as e:  # exceptions switched on by someone else
        ds, why = None, str(e).strip()
    finally:
        gdal.PopErrorHandler()
    if ds is not None:
        return None
    why = why or "GDAL knows no raster driver for it"
    return (f"{value} exists but is not a raster GDAL can read ({why}): choose a GeoTIFF, JPEG 2000, VRT "
            f"or another raster file")


def layer_path(layer: QgsRasterLayer) -> str:
    """The GDAL dataset behind a raster layer; other providers (WMS, XYZ, ...) are refused."""
    if layer.providerType() != "gdal":
        raise ValueError(
            f"Layer '{layer.name()}' comes from the {layer.providerType()} provider; MoSAiC reads "
            "rasters GDAL can open: save the layer as a GeoTIFF (Export > Save As...) and use that."
        )
    return layer.source()


def resolve_model(value: str | None) -> str:
    """A model given as a path, or as the name of a bundled/user model; empty = the bundled one."""
    value = (value or "").strip()
    if not value:
        return default_model_path()
    if Path(value).exists() or Path(value + ".json").exists():
        return value
    for info in list_models():
        if info.name == value:
            return info.path
    return value  # read_model_info() then says what is missing


def file_band_lists(
    optical: str | None, sar: str | None, model: str
) -> tuple[list[str] | None, list[str] | None, dict[str, Any]]:
    """Each input's band names as the file gives them ('-' = a band the model does not use).

    Returns (optical bands, SAR bands, the ``describe_inputs`` dict). Imports torch.

    Raises:
        ValueError: the file names none of its bands (the order would be a guess), a band cannot
            be recognised, or the model needs a band the file lacks; the message names the
            field to type the names in.
    """
    from ..core.engine import describe_inputs  # lazy: the engine imports torch
    from ..core.engine.band_mapping import BandOrderUnknown

    try:
        described = describe_inputs(optical, sar, model)
    except FileNotFoundError as e:
        raise ValueError(str(e)) from None
    lists: list[list[str] | None] = []
    for key, label, field in (("optical", "optical", "'Optical band names, in file order' (OPTICAL_BANDS)"),
                              ("sar", "SAR", "'SAR band names, in file order' (SAR_BANDS)")):
        info = described.get(key)
        if info is None:
            lists.append(None)
            continue
        bands = list(info["bands"])
        need = described["model"]["s2_bands" if key == "optical" else "s1_bands"]
        if info.get("order_guessed"):  # the engine's own words, naming this parameter
            unknown_order = BandOrderUnknown(f"The {label} layer", info["path"], "s2" if key == "optical" else "s1",
                                             bands, need)
            raise ValueError(unknown_order.message(field))
        unknown = [i + 1 for i, name in enumerate(bands) if name == "?"]
        if unknown:
            raise ValueError(
                f"The {label} layer's band(s) {unknown} have no recognisable name (descriptions: "
                f"{info['descriptions']}). Type the band names in file order in {field}, e.g. "
                f"{','.join(need)}, with '-' for a band to ignore."
            )
        if info["missing"]:
            raise ValueError(
                f"The {label} layer lacks band(s) {', '.join(info['missing'])} that the model needs "
                f"(its bands read as {','.join(bands)}). Choose another layer, or correct the names in {field}."
            )
        lists.append(bands)
    return lists[0], lists[1], described

