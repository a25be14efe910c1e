#!/usr/bin/env bash
# `make test-qgis-lts`: the whole test suite on QGIS 3.40 LTR, as Debian 13 ("trixie") ships it
# (Python 3.13, numpy 2.2, GDAL 3.10, rasterio 1.4), in a Debian 13 root made with debootstrap.
# `make test-ubuntu` (MOSAIC_LTS_DIST=noble): the same on Ubuntu 24.04 LTS, QGIS 3.34 (Python 3.12,
# numpy 1.26, GDAL 3.8, rasterio 1.3), from Ubuntu's archive (main + universe).
#
# The root is built once and kept (MOSAIC_LTS_ROOT, default ~/.cache/mosaic/qgis-lts-DIST:
# about 6 GB with torch and the .venv, 3-5 minutes the first time); each run copies the working tree into it (tracked
# and untracked files, not ignored ones), keeps its .venv between runs, and runs `make test`
# there, which sets up that .venv the same way as on the host (scripts/setup_env.sh).
# Needs root (debootstrap, chroot, mounts) and the distribution's package mirror (MOSAIC_DEBIAN_MIRROR).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

DIST=${MOSAIC_LTS_DIST:-trixie}
ROOT=${MOSAIC_LTS_ROOT:-$HOME/.cache/mosaic/qgis-lts-$DIST}
case "$DIST" in
    trixie) MIRROR=${MOSAIC_DEBIAN_MIRROR:-http://deb.debian.org/debian}; NAME="Debian 13" ;;
    noble) MIRROR=${MOSAIC_DEBIAN_MIRROR:-http://archive.ubuntu.com/ubuntu}; NAME="Ubuntu 24.04" ;;
    *) echo "test-qgis-lts: MOSAIC_LTS_DIST is trixie (Debian 13) or noble (Ubuntu 24.04), not $DIST" >&2; exit 2 ;;
esac
# what setup_env.sh would install, plus what it needs to run; the rest comes from setup_env.sh
PACKAGES=(python3-qgis qgis-providers qgis python3-rasterio python3-venv python3-pip xvfb make git)
stamp="$ROOT/.mosaic-root-$(echo "$DIST ${PACKAGES[*]}" | sha256sum | cut -c1-12)"

log() { echo "test-qgis-lts ($DIST): $*"; }
[ "$(id -u)" -eq 0 ] || { log "run as root (debootstrap, chroot and mounts need it)" >&2; exit 1; }

mounted=()
mount_into() {  # the kernel file systems a chroot needs, undone on exit
    local root=$1
    mount -t proc proc "$root/proc" && mounted+=("$root/proc")
    mount -t sysfs sys "$root/sys" && mounted+=("$root/sys")
    mount --bind /dev "$root/dev" && mounted+=("$root/dev")
    mount --bind /dev/pts "$root/dev/pts" && mounted+=("$root/dev/pts")
    cp /etc/resolv.conf "$root/etc/resolv.conf"
    # the host's certificate authorities (a proxy that re-signs TLS needs its own), for pip in the root
    [ -f /etc/ssl/certs/ca-certificates.crt ] && cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/host-ca-bundle.crt"
}
unmount_all() {
    local i
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[i]}" 2>/dev/null || true; done
    mounted=()
}
trap unmount_all EXIT

remove_tree() {  # a root left by a killed run may still have /dev bound inside: unmount, never cross into it
    local path=$1
    { grep -o " $path/[^ ]*" /proc/mounts || true; } | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
    rm -rf --one-file-system "$path"
}

ubuntu_keyring() {  # the archive keyring of Ubuntu, from its ubuntu-keyring package; prints its path
    local dir=$1/ubuntu-keyring deb
    if [ ! -s "$dir/ubuntu-archive-keyring.gpg" ]; then
        mkdir -p "$dir"
        deb=$(curl -fsS https://archive.ubuntu.com/ubuntu/dists/noble/main/binary-amd64/Packages.gz | gunzip \
            | awk '/^Package: ubuntu-keyring$/{f=1} f&&/^Filename:/{print $2; exit}')
        curl -fsS "https://archive.ubuntu.com/ubuntu/$deb" -o "$dir/keyring.deb"
        dpkg-deb -x "$dir/keyring.deb" "$dir/x"
        cp "$dir/x/usr/share/keyrings/ubuntu-archive-keyring.gpg" "$dir/ubuntu-archive-keyring.gpg"
        rm -rf "$dir/x" "$dir/keyring.deb"
    fi
    echo "$dir/ubuntu-archive-keyring.gpg"
}

in_root() {
    local cert=()
    [ -f "$1/etc/ssl/certs/host-ca-bundle.crt" ] && cert=(PIP_CERT=/etc/ssl/certs/host-ca-bundle.crt)
    chroot "$1" /usr/bin/env -i HOME=/root LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        DEBIAN_FRONTEND=noninteractive "${cert[@]}" bash -c "$2"
}

if [ ! -e "$stamp" ]; then
    t0=$SECONDS
    command -v debootstrap >/dev/null 2>&1 || { apt-get update -q && apt-get install -y -q --no-install-recommends debootstrap; }
    remove_tree "$ROOT.tmp"
    mkdir -p "$(dirname "$ROOT")"
    log "building a $NAME root in $ROOT (once)"
    boot=(--variant=minbase --include=ca-certificates)
    script=()
    if [ "$DIST" = noble ]; then  # Debian's debootstrap knows Ubuntu through its gutsy script; the keyring
        # comes from Ubuntu's archive over HTTPS (Debian 12 does not package it)
        keyring=$(ubuntu_keyring "$(dirname "$ROOT")")
        boot+=(--components=main,universe --keyring="$keyring")
        script=(/usr/share/debootstrap/scripts/gutsy)
    fi
    debootstrap "${boot[@]}" "$DIST" "$ROOT.tmp" "$MIRROR" "${script[@]}" >"$ROOT.log" 2>&1 \
        || { log "debootstrap failed: see $ROOT.log" >&2; exit 1; }
    mount_into "$ROOT.tmp"
    in_root "$ROOT.tmp" "apt-get update -q && apt-get install -y -q --no-install-recommends ${PACKAGES[*]}" >>"$ROOT.log" 2>&1 \
        || { log "installing QGIS in the root failed: see $ROOT.log" >&2; exit 1; }
    unmount_all
    remove_tree "$ROOT"
    mv "$ROOT.tmp" "$ROOT"
    touch "$stamp"
    log "root ready in $((SECONDS - t0)) s"
fi

# the working tree, as CI would see it: tracked and untracked files, not ignored ones; .venv kept
mkdir -p "$ROOT/src"
find "$ROOT/src" -mindepth 1 -maxdepth 1 ! -name .venv -exec rm -rf --one-file-system {} +
git ls-files -co --exclude-standard -z | tar --null -T - -cf - | tar -xf - -C "$ROOT/src"
# a repository whose HEAD is that tree, for what reads committed files (make package)
rm -rf "$ROOT/src/.git"
git -C "$ROOT/src" init -q && git -C "$ROOT/src" add -A && \
    git -C "$ROOT/src" -c user.name=mosaic -c user.email=mosaic@localhost commit -q -m "working tree"
mount_into "$ROOT"
log "$(in_root "$ROOT" 'qgis_process --version 2>/dev/null | grep -m1 QGIS; python3 --version')" || true
in_root "$ROOT" "cd /src && make test${TESTS:+ TESTS='$TESTS'}"
