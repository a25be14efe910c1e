#!/usr/bin/env bash
# Screenshot of the real QGIS desktop: labelled polygons, fine-tuning from the dock, the
# re-classified layer (qgis_shots.sh says what it needs).
exec "$(dirname "$0")/qgis_shots.sh" docs/screenshots/qgis_fewshot_startup.py /tmp/shot5 \
    ready=docs/screenshots/qgis-fewshot-reclassified.png
