"""The object QGIS holds for the plugin: Processing provider, dock panel, menu, dependency check."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from qgis.core import Qgis, QgsApplication, QgsMessageLog
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QAction, QFileDialog, QMessageBox, QPushButton

from . import deps
from .provider import ICON_PATH, MosaicProvider

if TYPE_CHECKING:
    from qgis.gui import QgisInterface

    from .dock import MosaicDock

MENU = "&MoSAiC"


class MosaicPlugin:
    """QGIS plugin object, created by ``classFactory``.

    QGIS calls ``initProcessing`` alone when only Processing is needed
    (``qgis_process``) and ``initGui`` in the desktop; both are safe to call twice.
    """

    def __init__(self, iface: QgisInterface | None) -> None:
        self.iface = iface
        self.provider: MosaicProvider | None = None
        self.dock: MosaicDock | None = None
        self.actions: list[QAction] = []
        self.install_task: deps.InstallTask | None = None
        deps.add_ext_libs_to_path()

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
        if self.iface is None or self.dock is not None:
            return
        from .dock import MosaicDock  # widgets only: no heavy imports

        self.dock = MosaicDock(self.iface, self.iface.mainWindow())
        self.dock.hide()
        self.iface.addDockWidget(Qt.RightDockWidgetArea, self.dock)
        toggle = self.dock.toggleViewAction()
        toggle.setIcon(QIcon(str(ICON_PATH)))
        toggle.setText("MoSAiC panel")
        self.iface.addToolBarIcon(toggle)
        self.iface.addPluginToMenu(MENU, toggle)
        install = QAction("Install Python dependencies…", self.iface.mainWindow())
        install.triggered.connect(self.install_dependencies)
        self.iface.addPluginToMenu(MENU, install)
        self.actions = [toggle, install]
        self.check_dependencies()

    def check_dependencies(self) -> list[str]:
        """Tell the user what is missing, with a button that installs it."""
        missing = deps.missing_modules()
        if missing and self.iface is not None:
            message = deps.missing_message(missing)
            QgsMessageLog.logMessage(message, deps.LOG_TAG, Qgis.Warning)
            bar = self.iface.messageBar()
            widget = bar.createMessage("MoSAiC", message)
            button = QPushButton("Install…", widget)
            button.clicked.connect(self.install_dependencies)
            widget.layout().addWidget(button)
            bar.pushWidget(widget, Qgis.Warning)
        return missing

    def install_dependencies(self, *_args, confirm: bool = True, wheels: str | None = None) -> deps.InstallTask | None:
        """Show the pip plan, and on OK run it in a background task; "From a wheel folder…" (or
        ``wheels``) installs offline from the wheels in a folder."""
        missing = deps.missing_modules()
        bar = self.iface.messageBar() if self.iface is not None else None
        if not missing:
            if bar is not None:
                bar.pushMessage("MoSAiC", "All Python dependencies are installed.", level=Qgis.Success, duration=5)
            return None
        if self.install_task is not None:
            return self.install_task
        try:
            plan = deps.install_plan(missing, wheels=Path(wheels) if wheels else None)
        except RuntimeError as e:
            if bar is not None:
                bar.pushMessage("MoSAiC", str(e), level=Qgis.Critical, duration=0)
            return None
        if confirm:
            parent = self.iface.mainWindow() if self.iface is not None else None
            box = QMessageBox(QMessageBox.Question, "Install MoSAiC dependencies",
                              "MoSAiC will run pip with QGIS's Python to install the missing packages into its own "
                              "folder (QGIS's numpy is kept):\n\n" + plan.describe()
                              + "\n\nThis downloads several hundred MB. Continue?", QMessageBox.Cancel, parent)
            install = box.addButton("Install", QMessageBox.AcceptRole)
            offline = box.addButton("From a wheel folder…", QMessageBox.ActionRole)
            box.exec_()
            if box.clickedButton() is offline:
                folder = QFileDialog.getExistingDirectory(parent, "Folder of wheel files (.whl) for QGIS's Python")
                return self.install_dependencies(confirm=True, wheels=folder) if folder else None
            if box.clickedButton() is not install:
                return None

        def done(ok: bool, message: str) -> None:
            self.install_task = None
            if bar is not None:
                bar.pushMessage("MoSAiC", message, level=Qgis.Success if ok else Qgis.Critical, duration=0)

        self.install_task = deps.InstallTask(plan, on_done=done)
        if bar is not None:
            bar.pushMessage("MoSAiC", f"Installing {', '.join(missing)} in the background…", level=Qgis.Info, duration=5)
        QgsApplication.taskManager().addTask(self.install_task)
        return self.install_task

    def unload(self) -> None:
        """Remove the provider, the dock and the menu entries; cancel a running task."""
        if self.dock is not None:
            self.dock.shutdown()
            if self.iface is not None:
                self.iface.removeDockWidget(self.dock)
            self.dock.setParent(None)
            self.dock.deleteLater()
            self.dock = None
        if self.iface is not None:
            for action in self.actions:
                self.iface.removePluginMenu(MENU, action)
                self.iface.removeToolBarIcon(action)
        self.actions = []
        if self.install_task is not None:
            self.install_task.on_done = None
            self.install_task = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
        # the engine keeps the last model between runs; free it (only if the engine was ever loaded)
        kept = sys.modules.get(__package__.rpartition(".")[0] + ".core.engine.model_cache")
        if kept is not None:
            kept.forget()
