#!/usr/bin/env bash
# Idempotent development/CI environment for MoSAiC on Debian 12 / Ubuntu:
#   1. system packages (QGIS python bindings, rasterio on the same GDAL) via apt,
#   2. .venv with --system-site-packages so it sees Debian's qgis and rasterio,
#   3. pip packages from requirements/ (skipped when the stamp for their hash exists).
# Fast (about a second) when everything is already in place.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV=.venv
REQUIREMENTS=requirements/requirements.txt
CONSTRAINTS=requirements/constraints.txt
# qgis brings qgis_process (tested from the shell) and the desktop for screenshots
APT_PACKAGES=(python3-qgis python3-rasterio python3-venv xvfb qgis-providers qgis)
TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
LOCAL_WHEELS=${MOSAIC_WHEELS:-/opt/wheels}

log() { echo "setup_env: $*"; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        log "need root (or sudo) to run: $*" >&2
        exit 1
    fi
}

# 1. System packages: install when the bindings do not import or a package is missing.
missing=()
if ! /usr/bin/python3 -c 'import qgis.core, rasterio' >/dev/null 2>&1; then
    missing=("${APT_PACKAGES[@]}")
elif command -v dpkg-query >/dev/null 2>&1; then
    for pkg in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
    done
fi
if [ ${#missing[@]} -gt 0 ]; then
    log "installing system packages: ${missing[*]}"
    as_root apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi

# 2. The virtual environment.
if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV (with system site packages)"
    /usr/bin/python3 -m venv --system-site-packages "$VENV"
fi

# 3. Python packages, once per version of the requirement files.
hash=$(cat "$REQUIREMENTS" "$CONSTRAINTS" | sha256sum | cut -c1-16)
stamp="$VENV/.installed-$hash"
if [ -e "$stamp" ]; then
    log "$VENV is up to date"
    exit 0
fi

pip_install() {
    "$VENV/bin/python" -m pip install --disable-pip-version-check \
        -c "$CONSTRAINTS" -r "$REQUIREMENTS" "$@"
}
find_links=()
[ -d "$LOCAL_WHEELS" ] && find_links=(--find-links "$LOCAL_WHEELS")

torch_pin=$(grep -E '^torch==' "$CONSTRAINTS" | cut -d= -f3)
log "installing Python packages; torch $torch_pin from local wheels ($LOCAL_WHEELS) or pip's configured sources"
if ! pip_install "${find_links[@]}"; then
    log "torch $torch_pin was not found locally; retrying with the PyTorch CPU index $TORCH_CPU_INDEX"
    if ! pip_install "${find_links[@]}" --extra-index-url "$TORCH_CPU_INDEX"; then
        log "could not install torch $torch_pin: put its wheel in $LOCAL_WHEELS (or set MOSAIC_WHEELS)" \
            "or allow access to $TORCH_CPU_INDEX" >&2
        exit 1
    fi
fi

"$VENV/bin/python" -c 'import torch, rasterio, qgis.core, sklearn, pyarrow, safetensors, pytestqt, pytest_qgis'
rm -f "$VENV"/.installed-*
touch "$stamp"
log "$VENV ready (torch $("$VENV/bin/python" -c 'import torch; print(torch.__version__)'))"
