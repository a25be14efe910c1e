#!/usr/bin/env bash
# Screenshots of the real QGIS desktop: the classify dialog with its advanced parameters open
# (Decode inputs once first), then its log after a run over the USA JPEG 2000 band files
# (qgis_shots.sh says what it needs).
exec "$(dirname "$0")/qgis_shots.sh" docs/screenshots/qgis_stage_startup.py /tmp/shot \
    ready1=docs/screenshots/qgis-classify-stage-parameter.png ready2=docs/screenshots/qgis-classify-jp2-log.png
