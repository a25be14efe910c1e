"""What the dock's band fields say about a layer, and the question asked before a run reads
a layer whose band order is only a guess.

The names come from the engine's own reading of the file (``core.engine.band_mapping``:
band descriptions, band metadata, wavelengths, a VRT's band file names), so the field shows
exactly what a run would read. No torch here: rasterio only, so it runs in the main thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from qgis.core import QgsRasterLayer


@dataclass
class LayerBands:
    """What a band field shows for one layer."""

    placeholder: str          # the field's grey text when empty
    detail: str               # the tooltip's account of the mapping
    warning: str = ""         # shown in words under the field: the order is a guess, or names are missing
    guess: list[str] | None = None  # the band list a run would use when the order is a guess
    names: list[str] | None = None  # the guessed name of every band, the unused ones too


def summary(guess: Sequence[str], named_from: str, ignored_names: Sequence[str]) -> str:
    """The whole mapping when it is short (``from band descriptions: VV,VH``), else how many
    model bands were found and which file bands are left out: what a field this wide can show."""
    text = f"{named_from}: {','.join(guess)}"
    if len(text) <= 40:
        return text
    used = sum(g != "-" for g in guess)
    return f"{named_from}: {used} bands" + (f", {', '.join(ignored_names)} unused" if ignored_names else "")


def describe_layer(layer: QgsRasterLayer, modality: str, needed: Sequence[str]) -> LayerBands:
    """How a run without a band list would read ``layer`` for a model that needs ``needed``."""
    from ..core.engine.band_mapping import as_typed, model_band_names  # rasterio: once installed
    from ..core.engine.scene_inputs import open_input

    count = layer.bandCount()
    try:
        with open_input(layer.source(), "the") as src:
            shown, missing, named = model_band_names(src, modality, needed)
    except (ValueError, FileNotFoundError) as e:
        return LayerBands(f"type the band names ({count} bands)", f"\n\n{e}")
    if named.order_guessed:
        typed = as_typed(shown)
        return LayerBands(
            f"order unknown: type or confirm ({count} bands)",
            f"\n\nGuess: {','.join(shown)}",
            warning=(f"⚠ The {count} bands of '{layer.name()}' have no names (no descriptions, band metadata or "
                     f"band file names). A run reads them as {typed} only if you confirm; type the names if the "
                     f"order differs."),
            guess=shown, names=named.names)
    unknown = named.unknown
    if unknown or missing:
        detail = (f"\n\nNot recognised: band(s) {unknown}" if unknown
                  else f"\n\nThe model needs {', '.join(missing)}, not found")
        return LayerBands(f"type the band names ({count} bands)", detail + f"; the model's bands: {','.join(needed)}",
                          warning=f"⚠ Type the band names of '{layer.name()}': " + detail.strip() + ".")
    ignored = [named.names[i] if named.names[i] != "?" else f"band {i + 1}"
               for i, g in enumerate(shown) if g == "-"]
    notes = ("\n\nNote: " + "; ".join(named.notes)) if named.notes else ""
    return LayerBands(summary(shown, f"from {named.read_from()}", ignored),
                      f"\n\nRead from the {named.read_from()}: {','.join(shown)}{notes}")


def order_question(layer: QgsRasterLayer, modality: str, bands: LayerBands, needed: Sequence[str],
                   means: Sequence[float] | None) -> str:
    """The question before a run reads ``layer`` in the guessed order, with what its values say
    about that order (``core.engine.band_check``)."""
    from ..core.engine.band_check import check_band_values
    from ..core.engine.band_mapping import as_typed
    from ..core.engine.scene_inputs import open_input

    what = "optical" if modality == "s2" else "SAR"
    guess, names = bands.guess or [], bands.names or bands.guess or []
    with open_input(layer.source(), what) as src:
        indexes = [list(guess).index(b) + 1 for b in needed]
        warnings = check_band_values(src, indexes, needed, 0.0, means or None, what, "the guessed order")
    listed = ", ".join(f"{i + 1}: {n}" + (" (unused)" if g == "-" else "") for i, (n, g) in enumerate(zip(names, guess)))
    verdict = (f"Warning: {warnings[0]}." if warnings else
               "A sample of its values looks like these bands (the relations between bands that hold on real "
               "Sentinel scenes hold here).")
    return (f"The {len(guess)} bands of '{layer.name()}' have no names: no band descriptions, band metadata or "
            f"band file names say which is which.\n\nA run would read them in the usual order for {len(guess)} "
            f"bands ({as_typed(guess)}):\n{listed}\n\n{verdict}\n\n"
            f"Read them in this order? (No: type the names in the band field.)")
