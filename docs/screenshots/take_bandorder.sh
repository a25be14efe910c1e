#!/usr/bin/env bash
# Screenshots of a layer whose band order is unknown (qgis_shots.sh says what it needs): the dock's
# band field and the line under it, then the question Classify asks before reading that order.
SCREEN=1366x768 exec "$(dirname "$0")/qgis_shots.sh" docs/screenshots/qgis_bandorder_startup.py /tmp/shot-bandorder \
    field=docs/screenshots/qgis-band-order-unknown.png dialog=docs/screenshots/qgis-band-order-question.png
