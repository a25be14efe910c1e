#!/usr/bin/env bash
# Screenshot of the real QGIS desktop: the dock panel and the classified Spain scene with its
# legend. Needs the qgis package, xvfb and imagemagick, and the plugin linked into the default
# profile (python/plugins/mosaic) and enabled.
set -euo pipefail
cd "$(dirname "$0")/../.."
rm -rf /tmp/shot && mkdir -p /tmp/shot/out
export MOSAIC_REPO=$PWD PYTHONPATH=$PWD/.venv/lib/python3.11/site-packages
unset QT_QPA_PLATFORM
xvfb-run -a -s '-screen 0 1600x1000x24' bash -c '
  qgis --nologo --noversioncheck --code docs/screenshots/qgis_screenshot_startup.py >/tmp/shot.log 2>&1 & pid=$!
  for i in $(seq 1 300); do [ -f /tmp/shot/ready ] && break; sleep 1; done
  sleep 2
  import -window root docs/screenshots/qgis-dock-classified.png
  kill $pid'
echo "docs/screenshots/qgis-dock-classified.png"
