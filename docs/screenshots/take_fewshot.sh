#!/usr/bin/env bash
# Screenshot of the real QGIS desktop: labelled polygons, fine-tuning from the dock, the
# re-classified layer. Needs the qgis package, xvfb and imagemagick, and the plugin linked
# into the default profile (python/plugins/mosaic) and enabled.
set -euo pipefail
cd "$(dirname "$0")/../.."
rm -rf /tmp/shot5
export MOSAIC_REPO=$PWD PYTHONPATH=$PWD/.venv/lib/python3.11/site-packages
unset QT_QPA_PLATFORM
xvfb-run -a -s '-screen 0 1600x1000x24' bash -c '
  qgis --nologo --noversioncheck --code docs/screenshots/qgis_fewshot_startup.py >/tmp/shot5.log 2>&1 & pid=$!
  for i in $(seq 1 300); do [ -f /tmp/shot5/ready ] && break; sleep 1; done
  import -window root docs/screenshots/qgis-fewshot-reclassified.png
  kill $pid'
echo "docs/screenshots/qgis-fewshot-reclassified.png"
