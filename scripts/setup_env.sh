#!/usr/bin/env bash
# Idempotent development/CI environment for MoSAiC on Debian 12 / 13 and Ubuntu:
#   1. system packages (QGIS python bindings, rasterio on the same GDAL) via apt,
#   2. .venv with --system-site-packages so it sees the system's qgis, rasterio and numpy,
#   3. torch from the first source that has it: a local wheel folder, the PyTorch CPU index,
#      the distribution's python3-torch, PyPI (said in one line),
#   4. the other pip packages, pinned by the system numpy's major version
#      (requirements/constraints-numpy1.txt or -numpy2.txt) with numpy held at the system's.
# Fast (about a second) when everything is already in place.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV=.venv
REQUIREMENTS=requirements/requirements.txt
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

# 3.-4. Python packages, once per version of the requirement files and of the system's Python and numpy.
read -r py_version numpy_version < <(/usr/bin/python3 -c 'import sys, numpy; print("%d.%d" % sys.version_info[:2], numpy.__version__)')
CONSTRAINTS=requirements/constraints-numpy${numpy_version%%.*}.txt
[ -f "$CONSTRAINTS" ] || { log "no pins for numpy $numpy_version ($CONSTRAINTS)" >&2; exit 1; }
hash=$( (cat "$REQUIREMENTS" "$CONSTRAINTS"; echo "$py_version $numpy_version") | sha256sum | cut -c1-16)
stamp="$VENV/.installed-$hash"
if [ -e "$stamp" ]; then
    log "$VENV is up to date"
    exit 0
fi
pins=$(mktemp)
trap 'rm -f "$pins"' EXIT
# the system numpy is QGIS's: never upgraded, downgraded or shadowed by a pip copy
{ grep -v '^torch==' "$CONSTRAINTS"; echo "numpy==$numpy_version"; } >"$pins"
pip_quiet() { "$VENV/bin/python" -m pip install --disable-pip-version-check -q "$@"; }

torch_pin=$(grep -E '^torch==' "$CONSTRAINTS" | cut -d= -f3)
torch_source=""
if "$VENV/bin/python" -c 'import torch' >/dev/null 2>&1; then
    torch_source="the environment (already installed)"
elif [ -d "$LOCAL_WHEELS" ] && pip_quiet --find-links "$LOCAL_WHEELS" -c "$pins" "torch==$torch_pin" 2>/dev/null; then
    torch_source="the local wheel folder $LOCAL_WHEELS"
elif pip_quiet --timeout 20 --retries 0 --index-url "$TORCH_CPU_INDEX" -c "$pins" "torch==$torch_pin" 2>/dev/null; then
    torch_source="the PyTorch CPU index"
elif apt-cache show python3-torch >/dev/null 2>&1 && \
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-torch >/dev/null; then
    torch_source="the distribution's python3-torch"
elif pip_quiet -c "$pins" torch; then
    torch_source="PyPI (its default build, with CUDA)"
else
    log "could not install torch: put a wheel for Python $py_version in $LOCAL_WHEELS (or set MOSAIC_WHEELS)," \
        "or allow access to $TORCH_CPU_INDEX or PyPI" >&2
    exit 1
fi
log "torch $("$VENV/bin/python" -c 'import torch; print(torch.__version__)') from $torch_source" \
    "(Python $py_version, numpy $numpy_version, pins $CONSTRAINTS)"

find_links=()
[ -d "$LOCAL_WHEELS" ] && find_links=(--find-links "$LOCAL_WHEELS")
"$VENV/bin/python" -m pip install --disable-pip-version-check "${find_links[@]}" -c "$pins" -r "$REQUIREMENTS"

"$VENV/bin/python" -c 'import torch, rasterio, qgis.core, sklearn, pyarrow, safetensors, pytestqt, pytest_qgis'
rm -f "$VENV"/.installed-*
touch "$stamp"
log "$VENV ready"
