"""Model files as the GUI sees them: where they live, and what their card says.

A model is ``NAME.safetensors`` + ``NAME.json`` (see ``core/io/model_file.py``, the
authority on the format). The plugin reads only the JSON card here, with the standard
library, so the dock can list models, classes and bands without importing torch; the
weights are checked and loaded by ``core`` when a tool runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from qgis.core import QgsApplication

PLUGIN_ROOT = Path(__file__).resolve().parent.parent
BUNDLED_MODELS_DIR = PLUGIN_ROOT / "resources" / "models"
DEFAULT_MODEL_NAME = "mosaic-small-ben19"
CARD_FORMAT = "mosaic-model"  # the ``format`` value of every MoSAiC card


@dataclass(frozen=True)
class ModelInfo:
    """The parts of a model card the plugin shows and styles outputs with."""

    path: str  # the card (NAME.json); core accepts NAME, NAME.json or NAME.safetensors
    name: str
    classes: tuple[tuple[str, str], ...]  # (name, "#rrggbb") in class-index order
    optical_bands: tuple[str, ...] = ()
    sar_bands: tuple[str, ...] = ()
    optical_level: str = ""
    optical_means: tuple[float, ...] = ()  # training means per optical band (a band-order check uses them)
    sar_units: str = ""
    bundled: bool = False
    metrics: dict = field(default_factory=dict, compare=False)
    # the pixel head's classes, (name, colour), of a model fine-tuned from polygons (fine maps)
    pixel_classes: tuple[tuple[str, str], ...] = ()
    pixel_modalities: tuple[str, ...] = ()

    @property
    def class_names(self) -> list[str]:
        return [name for name, _ in self.classes]

    def summary(self) -> str:
        """One paragraph for the dock: inputs and classes."""
        parts = []
        if self.optical_bands:
            level = f" ({self.optical_level})" if self.optical_level else ""
            parts.append(f"Optical{level}: {' '.join(self.optical_bands)}")
        if self.sar_bands:
            units = f" ({self.sar_units})" if self.sar_units else ""
            parts.append(f"SAR{units}: {' '.join(self.sar_bands)}")
        parts.append(f"{len(self.classes)} classes")
        if self.pixel_classes:
            parts.append(f"Fine map (10 m) classes: {', '.join(n for n, _ in self.pixel_classes)}")
        return "\n".join(parts)

    def classes_for(self, kind: str) -> tuple[tuple[str, str], ...]:
        """The (name, colour) classes an output kind is coloured with: the pixel head's for fine outputs."""
        return self.pixel_classes if kind.startswith("fine_") else self.classes


def card_path(path: str | Path) -> Path:
    """The card of a model given as NAME, NAME.json or NAME.safetensors."""
    p = Path(path)
    if p.suffix in (".json", ".safetensors"):
        p = p.with_suffix("")
    return p.with_suffix(".json")


def default_model_path() -> str:
    """The bundled model's card."""
    return str(BUNDLED_MODELS_DIR / f"{DEFAULT_MODEL_NAME}.json")


def user_models_dir() -> Path:
    """The user's model folder in the QGIS profile (created on demand)."""
    return Path(QgsApplication.qgisSettingsDirPath()) / "mosaic" / "models"


def read_model_info(path: str | Path) -> ModelInfo:
    """Read a model card.

    Raises:
        ValueError: the card or the weights are missing, or the card is not a MoSAiC card;
            the message names the file and what is wrong.
    """
    cpath = card_path(path)
    if not cpath.is_file():
        raise ValueError(f"model card {cpath} not found (a model is NAME.safetensors + NAME.json)")
    if not cpath.with_suffix(".safetensors").is_file():
        raise ValueError(f"model weights {cpath.with_suffix('.safetensors')} not found next to its card")
    try:
        card = json.loads(cpath.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{cpath} is not a MoSAiC model card ({e})") from None
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        raise ValueError(f'{cpath} is not a MoSAiC model card (no "format": "{CARD_FORMAT}")')
    classes = card.get("classes") or []
    if not classes or not all(isinstance(c, dict) and c.get("name") for c in classes):
        raise ValueError(f"{cpath} lists no classes")
    inputs = card.get("inputs") or {}
    modalities = (card.get("architecture") or {}).get("modalities") or ["s2", "s1"]
    s2 = inputs.get("s2") or {}
    s1 = inputs.get("s1") or {}
    return ModelInfo(
        path=str(cpath),
        name=cpath.stem,
        classes=tuple((str(c["name"]), str(c.get("color") or "#808080")) for c in classes),
        optical_bands=tuple(s2.get("bands") or ()) if "s2" in modalities else (),
        sar_bands=tuple(s1.get("bands") or ()) if "s1" in modalities else (),
        optical_level=str(s2.get("level") or ""),
        optical_means=tuple(float(v) for v in s2.get("mean") or ()),
        sar_units=str(s1.get("units") or ""),
        bundled=cpath.parent.resolve() == BUNDLED_MODELS_DIR.resolve(),
        metrics=card.get("metrics") or {},
        pixel_classes=tuple((str(c["name"]), str(c.get("color") or "#808080"))
                            for c in card.get("pixel_classes") or [] if isinstance(c, dict) and c.get("name")),
        pixel_modalities=tuple((card.get("architecture") or {}).get("pixel_modalities") or ()),
    )


def list_models(extra_dirs: tuple[Path, ...] = ()) -> list[ModelInfo]:
    """Readable models: bundled first, then the user folder; unreadable cards are skipped."""
    found: list[ModelInfo] = []
    seen: set[str] = set()
    for folder in (BUNDLED_MODELS_DIR, user_models_dir(), *extra_dirs):
        if not folder.is_dir():
            continue
        for card in sorted(folder.glob("*.json")):
            try:
                info = read_model_info(card)
            except ValueError:
                continue
            if info.path not in seen:
                seen.add(info.path)
                found.append(info)
    return found
