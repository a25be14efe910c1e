"""What a UI shows of its inputs before a run: each layer's bands as the model would read
them, its processing level or SAR units, and what the model expects."""
from __future__ import annotations

from typing import Any

from ..io.model_file import read_card
from .align import detect_level, sar_is_linear
from .band_mapping import model_band_names
from .scene_inputs import open_input


def describe_inputs(optical: str | None, sar: str | None, model: str) -> dict:
    """Band mapping guesses and facts per input, for a UI to show and edit.

    Returns ``{'model': {...}, 'optical': {...} | None, 'sar': {...} | None}``; each input has
    path, crs, size, resolution, count, descriptions, ``bands`` (the file band names as a run
    without a band list reads them, '?' unknown, '-' for bands the model does not use),
    ``named_from`` (where those names come from), ``order_guessed`` (True when the file names
    none of its bands and ``bands`` is the usual order for their count: a run refuses it unless
    the names are given), ``notes`` (places that disagree), ``missing`` (model bands not
    found), and level (optical) or units (SAR). Raises ValueError/FileNotFoundError.
    """
    card = read_card(model)
    arch = card.get("architecture", {})
    need = {"s2": list(arch.get("s2_bands", [])), "s1": list(arch.get("s1_bands", []))}
    out: dict[str, Any] = {"model": {"s2_bands": need["s2"], "s1_bands": need["s1"],
                                     "level": card.get("inputs", {}).get("s2", {}).get("level"),
                                     "modalities": list(arch.get("modalities", []))},
                           "optical": None, "sar": None}
    if optical is None and sar is None:
        raise ValueError("give an optical (Sentinel-2) and/or a SAR (Sentinel-1) raster")
    for key, path, m in (("optical", optical, "s2"), ("sar", sar, "s1")):
        if path is None:
            continue
        with open_input(path, key) as src:
            guess, missing, named = model_band_names(src, m, need[m])
            info = {"path": str(path), "crs": src.crs.to_string() if src.crs else None,
                    "width": src.width, "height": src.height, "resolution": src.res, "count": src.count,
                    "descriptions": list(src.descriptions), "bands": guess, "missing": missing,
                    "named_from": named.read_from(), "order_guessed": named.order_guessed, "notes": named.notes}
            if m == "s2":
                info["level"] = detect_level(str(path), src.tags(), named.names)
            else:
                idx = [i + 1 for i, g in enumerate(guess) if g in need[m]] or [1]
                info["units"] = "linear" if sar_is_linear(src, idx) else "db"
            out[key] = info
    return out
