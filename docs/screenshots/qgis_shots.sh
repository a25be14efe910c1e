#!/usr/bin/env bash
# Start the real QGIS desktop under xvfb with a startup script and take screenshots when it
# says so: qgis_shots.sh STARTUP.py SHOT_DIR NAME=PNG [NAME=PNG ...]. For each pair in turn, it
# waits (up to 5 minutes) for SHOT_DIR/NAME, which the startup script writes when the desktop
# is ready to be shot, takes the whole screen into PNG, then writes SHOT_DIR/NAME.taken, which
# the startup script may wait for before its next step. SCREEN=WxH sets the screen (default 1600x1000). Needs the qgis package, xvfb and
# imagemagick, and the plugin linked into the default profile (python/plugins/mosaic), enabled.
set -euo pipefail
cd "$(dirname "$0")/../.."
startup=$1 shots=$2
shift 2
rm -rf "$shots" && mkdir -p "$shots/out"
export MOSAIC_REPO=$PWD PYTHONPATH=$PWD/.venv/lib/python3.11/site-packages SHOTS=$shots STARTUP=$startup
unset QT_QPA_PLATFORM
xvfb-run -a -s "-screen 0 ${SCREEN:-1600x1000}x24" bash -c '
  qgis --nologo --noversioncheck --code "$STARTUP" >"$SHOTS.log" 2>&1 & pid=$!
  for pair in "$@"; do
    name=${pair%%=*} png=${pair#*=}
    for i in $(seq 1 300); do [ -f "$SHOTS/$name" ] && break; sleep 1; done
    sleep 2
    import -window root "$png"
    touch "$SHOTS/$name.taken"
    echo "$png"
  done
  kill $pid' shots "$@"
