#!/usr/bin/env bash
# Screenshots of the real QGIS desktop: the classify dialog with its advanced parameters open
# (Decode inputs once first), then its log after a run over the USA JPEG 2000 band files.
# Needs the qgis package, xvfb and imagemagick, and the plugin linked into the default profile
# (python/plugins/mosaic) and enabled.
set -euo pipefail
cd "$(dirname "$0")/../.."
rm -rf /tmp/shot && mkdir -p /tmp/shot/out
export MOSAIC_REPO=$PWD PYTHONPATH=$PWD/.venv/lib/python3.11/site-packages
unset QT_QPA_PLATFORM
xvfb-run -a -s '-screen 0 1600x1000x24' bash -c '
  qgis --nologo --noversioncheck --code docs/screenshots/qgis_stage_startup.py >/tmp/shot.log 2>&1 & pid=$!
  for i in $(seq 1 300); do [ -f /tmp/shot/ready1 ] && break; sleep 1; done
  import -window root docs/screenshots/qgis-classify-stage-parameter.png
  touch /tmp/shot/go
  for i in $(seq 1 300); do [ -f /tmp/shot/ready2 ] && break; sleep 1; done
  import -window root docs/screenshots/qgis-classify-jp2-log.png
  kill $pid'
echo "docs/screenshots/qgis-classify-stage-parameter.png docs/screenshots/qgis-classify-jp2-log.png"
