#!/usr/bin/env bash
# Screenshot of the real QGIS desktop: the fine map (10 m) of the Spain scene from the 43 drawn
# polygons, fine-tuned and classified from the dock (qgis_shots.sh says what it needs).
exec "$(dirname "$0")/qgis_shots.sh" docs/screenshots/qgis_finemap_startup.py /tmp/shot-fine \
    ready=docs/screenshots/qgis-fine-map.png
