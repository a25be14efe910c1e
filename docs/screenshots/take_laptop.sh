#!/usr/bin/env bash
# Screenshot of the real QGIS desktop on a 1366 x 768 laptop screen: the dock's settings scroll, the
# run buttons, progress bar and status line stay in sight (qgis_shots.sh says what it needs).
SCREEN=1366x768 exec "$(dirname "$0")/qgis_shots.sh" docs/screenshots/qgis_laptop_startup.py /tmp/shot-laptop \
    ready=docs/screenshots/qgis-dock-laptop.png
