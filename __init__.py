"""MoSAiC QGIS plugin entry point.

QGIS imports this package (installed as folder ``mosaic``) and calls
``classFactory``. Imports are relative so the folder works under any name, and
deferred so loading the plugin stays cheap: torch is only imported when a tool runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from qgis.gui import QgisInterface

    from .mosaic_qgis.plugin import MosaicPlugin


def classFactory(iface: QgisInterface | None) -> MosaicPlugin:  # noqa: N802 (name fixed by QGIS)
    """Return the plugin object for QGIS; ``iface`` is the ``QgisInterface``."""
    from .mosaic_qgis.plugin import MosaicPlugin

    return MosaicPlugin(iface)
