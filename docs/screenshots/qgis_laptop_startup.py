"""QGIS startup code for the laptop screenshot (run by docs/screenshots/take_laptop.sh): the dock on
a 1366 x 768 screen while a classification runs, its progress bar and status line in sight."""
import os
import sys
from pathlib import Path

from qgis.PyQt.QtCore import QTimer
from qgis.utils import iface

REPO = Path(os.environ.get("MOSAIC_REPO", "."))  # QGIS runs --code without __file__
sys.path.insert(0, str(REPO / "docs" / "screenshots"))
from spain_desktop import fit_on_screen, show_dock, spain_layers  # noqa: E402

OUT = Path(os.environ.get("SHOTS", "/tmp/shot-laptop"))
OUT.mkdir(exist_ok=True)
s1, s2 = spain_layers(REPO)
dock = show_dock(s1, s2, OUT / "out", size=(1366, 768))
iface.mainWindow().showMaximized()


def shoot() -> None:
    fit_on_screen(s2, screen_height=768)
    dock.window_check.setChecked(True)
    dock.classify_button.click()  # the shot is taken while it runs: progress and status in sight
    QTimer.singleShot(2500, lambda: (OUT / "ready").write_text("ok"))


QTimer.singleShot(3000, shoot)
