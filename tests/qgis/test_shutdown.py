"""QGIS closes cleanly while a MoSAiC run is in flight, and the cancelled run leaves no file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from .conftest import S1_PATH, S2_PATH


def test_quit_during_a_run(plugin_parent: Path, tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import json, time
        from qgis.core import QgsApplication, QgsProject, QgsRasterLayer
        from qgis.PyQt.QtCore import QCoreApplication
        from qgis.gui import QgsMessageBar
        from qgis.PyQt.QtWidgets import QMainWindow
        app = QgsApplication([], True)
        app.initQgis()

        class Iface:  # the little of QgisInterface the plugin uses
            def __init__(self):
                self.window, self.bar = QMainWindow(), QgsMessageBar()
            def mainWindow(self): return self.window
            def messageBar(self): return self.bar
            def mapCanvas(self): return None
            def __getattr__(self, name): return lambda *a, **k: None

        import mosaic
        plugin = mosaic.classFactory(Iface())
        plugin.initGui()
        s2 = QgsRasterLayer({str(S2_PATH)!r}, "s2")
        s1 = QgsRasterLayer({str(S1_PATH)!r}, "s1")
        QgsProject.instance().addMapLayers([s2, s1])
        dock = plugin.dock
        dock.output_dir.setFilePath({str(tmp_path / "out")!r})
        dock.optical_combo.setLayer(s2)
        dock.sar_combo.setLayer(s1)
        task = dock.start("embed")
        deadline = time.time() + 120
        while not task.band_lists and time.time() < deadline:  # until the engine runs
            QCoreApplication.processEvents()
            time.sleep(0.02)
        started = bool(task.band_lists)
        # what QGIS does on quit: unload plugins, cancel tasks, drop layers, exit
        plugin.unload()
        QgsApplication.taskManager().cancelAll()
        QgsProject.instance().removeAllMapLayers()
        del s2, s1
        app.exitQgis()
        print(json.dumps({{"started": started}}))
        """
    )
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(plugin_parent))
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"started": True}
    assert not any((tmp_path / "out").iterdir())  # cancelled: no output, no temporary file
