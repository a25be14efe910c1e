"""The MoSAiC Processing provider: one list of algorithm classes, nothing else."""

from __future__ import annotations

from pathlib import Path

from qgis.core import QgsProcessingAlgorithm, QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from . import deps
from .algorithms.classify import ClassifyAlgorithm
from .algorithms.embed import EmbedAlgorithm
from .algorithms.finetune import FinetuneAlgorithm

ICON_PATH = Path(__file__).resolve().parent.parent / "resources" / "icons" / "mosaic.svg"

# Algorithm classes offered by the provider, in toolbox order. Add a class here
# (one algorithm per module under ``algorithms/``) and it appears in Processing.
ALGORITHMS: tuple[type[QgsProcessingAlgorithm], ...] = (ClassifyAlgorithm, EmbedAlgorithm, FinetuneAlgorithm)


class MosaicProvider(QgsProcessingProvider):
    """Processing provider with id ``mosaic``; algorithms are ``mosaic:<name>``.

    It stays registered when torch or another dependency is missing: the algorithms
    then explain what to install (``canExecute``/``checkParameterValues``) instead of failing.
    """

    def id(self) -> str:  # noqa: A003 (QGIS API)
        return "mosaic"

    def name(self) -> str:
        return "MoSAiC"

    def longName(self) -> str:  # noqa: N802
        missing = deps.missing_modules()
        if missing:
            return f"MoSAiC (needs {', '.join(deps.REQUIRED[m] for m in missing)})"
        return self.name()

    def icon(self) -> QIcon:
        return QIcon(str(ICON_PATH))

    def svgIconPath(self) -> str:  # noqa: N802
        return str(ICON_PATH)

    def supportedOutputRasterLayerExtensions(self) -> list[str]:  # noqa: N802
        """The engine writes tiled, compressed GeoTIFFs."""
        return ["tif"]

    def defaultRasterFileExtension(self) -> str:  # noqa: N802
        return "tif"

    def loadAlgorithms(self) -> None:  # noqa: N802
        for algorithm_class in ALGORITHMS:
            self.addAlgorithm(algorithm_class())
