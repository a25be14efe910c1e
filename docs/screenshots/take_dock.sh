#!/usr/bin/env bash
# Screenshot of the real QGIS desktop: the dock panel and the classified Spain scene with its
# legend (qgis_shots.sh says what it needs).
exec "$(dirname "$0")/qgis_shots.sh" docs/screenshots/qgis_screenshot_startup.py /tmp/shot \
    ready=docs/screenshots/qgis-dock-classified.png
