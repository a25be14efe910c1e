"""The real unlabelled scenes the bundled model's self-supervised stage reads.

One list serves the recipe (``scripts/bundled_model.py``) and the low-label experiment
(``benchmarks/low_label.py``), so the table measures the recipe that made the model.
Paths are relative to the plugin folder; all but the bundled Spain pair live in the
development data beside it (``../shared/data``, see its README for sources and licences).
``None`` as the SAR input marks an optical-only scene: it feeds the optical stream's
intra-modal term only.
"""
from __future__ import annotations

from pathlib import Path

from ..paths import PLUGIN_ROOT

_SSL4EO = "../shared/data/unlabelled/ssl4eo-s12"
_MAJOR_TOM = "../shared/data/unlabelled/major-tom/S2L2A"

SPAIN = ("resources/sample/spain/Spain_7370579_S2Hand.tif", "resources/sample/spain/Spain_7370579_S1Hand.tif")

PRETRAINING_SCENES: tuple[tuple[str, str | None], ...] = (
    SPAIN,
    (f"{_SSL4EO}/s2a/0000200/20200604T054639_20200604T054831_T43RCP",
     f"{_SSL4EO}/s1/0000200/S1A_IW_GRDH_1SDV_20200607T010800_20200607T010825_032904_03CFBA_D457"),
    (f"{_SSL4EO}/s2a/0000200/20200813T054639_20200813T054952_T43RCP",
     f"{_SSL4EO}/s1/0000200/S1A_IW_GRDH_1SDV_20200903T131212_20200903T131237_034195_03F8F5_AC1C"),
    (f"{_MAJOR_TOM}/0U/0U_199R/S2A_MSIL2A_20220706T085611_N0400_R007_T33NZA_20220706T153419", None),
    (f"{_MAJOR_TOM}/199U/199U_1099R/S2B_MSIL2A_20200223T032739_N9999_R018_T48QUE_20230924T183543", None),
)


def resolve_scenes(scenes=PRETRAINING_SCENES, root: Path = PLUGIN_ROOT) -> list[tuple[str, str | None]]:
    """The scenes as absolute paths; raises with what to do when one is missing (a partial
    pretraining set would silently change the recipe)."""
    out, missing = [], []
    for s2, s1 in scenes:
        pair = (str((root / s2).resolve()), None if s1 is None else str((root / s1).resolve()))
        missing += [p for p in pair if p is not None and not Path(p).exists()]
        out.append(pair)
    if missing:
        raise FileNotFoundError("pretraining scenes not found: " + ", ".join(missing) + "; the recipe reads the "
                                "development data in ../shared/data beside the plugin folder (see docs/results.md)")
    return out
