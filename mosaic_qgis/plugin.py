"""The object QGIS holds for the plugin: registers and removes the Processing provider."""

from __future__ import annotations

from typing import TYPE_CHECKING

from qgis.core import QgsApplication

from .provider import MosaicProvider

if TYPE_CHECKING:
    from qgis.gui import QgisInterface


class MosaicPlugin:
    """QGIS plugin object, created by ``classFactory``.

    QGIS calls ``initProcessing`` alone when only Processing is needed
    (``qgis_process``) and ``initGui`` in the desktop; both are safe to call twice.
    """

    def __init__(self, iface: QgisInterface | None) -> None:
        self.iface = iface
        self.provider: MosaicProvider | None = None

    def initProcessing(self) -> None:  # noqa: N802 (QGIS API)
        """Register the provider once; the registry takes ownership of it."""
        if self.provider is not None:
            return
        provider = MosaicProvider()
        if not QgsApplication.processingRegistry().addProvider(provider):
            raise RuntimeError("could not register the MoSAiC Processing provider (id 'mosaic' taken?)")
        self.provider = provider

    def initGui(self) -> None:  # noqa: N802 (QGIS API)
        self.initProcessing()

    def unload(self) -> None:
        """Remove the provider; the registry deletes it, so drop our reference."""
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
