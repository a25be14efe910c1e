"""The MoSAiC Processing provider: one list of algorithm classes, nothing else."""

from __future__ import annotations

from pathlib import Path

from qgis.core import QgsProcessingAlgorithm, QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

ICON_PATH = Path(__file__).resolve().parent.parent / "resources" / "icons" / "mosaic.svg"

# Algorithm classes offered by the provider, in toolbox order. Add a class here
# (one algorithm per module under ``algorithms/``) and it appears in Processing.
ALGORITHMS: tuple[type[QgsProcessingAlgorithm], ...] = ()


class MosaicProvider(QgsProcessingProvider):
    """Processing provider with id ``mosaic``; algorithms are ``mosaic:<name>``."""

    def id(self) -> str:  # noqa: A003 (QGIS API)
        return "mosaic"

    def name(self) -> str:
        return "MoSAiC"

    def longName(self) -> str:  # noqa: N802
        return self.name()

    def icon(self) -> QIcon:
        return QIcon(str(ICON_PATH))

    def svgIconPath(self) -> str:  # noqa: N802
        return str(ICON_PATH)

    def loadAlgorithms(self) -> None:  # noqa: N802
        for algorithm_class in ALGORITHMS:
            self.addAlgorithm(algorithm_class())
