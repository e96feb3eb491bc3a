#!/usr/bin/env bash
# Build a local stand-in for the official `python:X-slim` images, which cannot
# be pulled here (no container registry is reachable).
#
# Usage: .ci/standin-image.sh SUITE TAG
#   SUITE  Debian suite: bookworm (Python 3.11) or trixie (Python 3.13)
#   TAG    local image tag to create, e.g. sm-byoc-python:3.11-slim
#
# Idempotent:
#   - image TAG exists              -> nothing to do
#   - cached rootfs tarball exists  -> only `docker import` it (~5 s)
#   - otherwise                     -> debootstrap the rootfs (~1 min), cache
#                                      the tarball, then import it
# The cache is ${SM_BYOC_CACHE:-$HOME/.cache/sm-byoc}/standin-SUITE.tar. It is
# written to a temp dir in the cache dir and renamed into place only when
# complete, so an interrupted run never leaves a broken cache. Concurrent runs
# for the same suite are serialised with flock.
#
# The stand-in (test-only; none of this belongs in generated Dockerfiles):
#   - Debian minbase + python3, python3-venv, python3-pip, python-is-python3,
#     ca-certificates; `python` and `pip` are in /usr/bin, not /usr/local/bin
#   - the host's extra CA certs (/usr/local/share/ca-certificates/*.crt, the
#     TLS-intercepting proxy's CA) are trusted, so pip works inside
#     `docker build` without any proxy settings
#   - EXTERNALLY-MANAGED removed, so `pip install` works as in python images
#   - ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin,
#     ENV LANG=C.UTF-8
#
# Environment (optional): SM_BYOC_CACHE (cache dir), DEBIAN_MIRROR (default
# http://deb.debian.org/debian).
set -euo pipefail

log() { printf '[standin-image] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

if [[ $# -ne 2 ]]; then
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi
SUITE=$1
TAG=$2
[[ $SUITE =~ ^[a-z]+$ ]] || die "bad SUITE '$SUITE' (expected e.g. bookworm or trixie)"

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE_DIR=${SM_BYOC_CACHE:-$HOME/.cache/sm-byoc}
TARBALL=$CACHE_DIR/standin-$SUITE.tar
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
INCLUDE=python3,python3-venv,python3-pip,python-is-python3,ca-certificates
SCRIPTS=/usr/share/debootstrap/scripts

# Engine first (no-op when `docker info` already answers).
if ! docker info >/dev/null 2>&1; then
    "$HERE/docker-engine.sh"
fi

if docker image inspect "$TAG" >/dev/null 2>&1; then
    log "image $TAG already exists"
    exit 0
fi

mkdir -p "$CACHE_DIR"
exec 9>"$CACHE_DIR/.standin-$SUITE.lock"
flock 9
# Another run may have finished the work while we waited for the lock.
if docker image inspect "$TAG" >/dev/null 2>&1; then
    log "image $TAG already exists"
    exit 0
fi

TMP=""
CHILD=""
# Remove a (possibly half-built) temp dir. An interrupted debootstrap can leave
# /proc, /sys or bind mounts of /dev inside the rootfs: unmount them (deepest
# first) before deleting, and never let rm cross into another filesystem.
remove_tmpdir() {
    local dir=$1 mnt
    awk -v p="${dir}/" 'index($2, p) == 1 { print $2 }' /proc/self/mounts \
        | sort -r | while read -r mnt; do umount -l "$mnt" || true; done
    rm -rf --one-file-system "$dir"
}
cleanup() {
    if [[ -n $CHILD ]] && kill -0 "$CHILD" 2>/dev/null; then
        # debootstrap runs in its own process group: stop all of it
        # (wget, dpkg in the chroot, ...) before removing its files.
        kill -TERM -- "-$CHILD" 2>/dev/null || true
        wait "$CHILD" 2>/dev/null || true
    fi
    if [[ -n $TMP && -d $TMP ]]; then
        remove_tmpdir "$TMP"
    fi
}
on_signal() {
    log "interrupted; removing ${TMP:-nothing}"
    exit 130
}

build_rootfs_tarball() {
    [[ $(id -u) -eq 0 ]] || die "building the rootfs needs root (debootstrap, chroot)"
    if ! command -v debootstrap >/dev/null 2>&1; then
        log "installing debootstrap"
        DEBIAN_FRONTEND=noninteractive apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends debootstrap
    fi
    # Debian 12's debootstrap (1.0.128+nmu2+deb12u2) already ships
    # scripts/trixie -> sid. Older builds lack it; the sid script is what
    # every Debian suite after bookworm uses, so link it.
    if [[ ! -e $SCRIPTS/$SUITE ]]; then
        [[ -e $SCRIPTS/sid ]] || die "no debootstrap script for $SUITE (nor sid)"
        log "debootstrap does not know $SUITE; linking $SCRIPTS/$SUITE -> sid"
        ln -s sid "$SCRIPTS/$SUITE"
    fi

    TMP=$(mktemp -d "$CACHE_DIR/.standin-$SUITE.XXXXXX")
    trap cleanup EXIT
    trap on_signal INT TERM HUP
    local rootfs=$TMP/rootfs start=$SECONDS

    log "debootstrap $SUITE (log: $TMP/debootstrap.log)"
    # Background + wait (instead of a foreground child) so that INT/TERM are
    # handled at once; setsid gives debootstrap its own process group.
    setsid debootstrap --variant=minbase --include="$INCLUDE" \
        "$SUITE" "$rootfs" "$MIRROR" </dev/null >"$TMP/debootstrap.log" 2>&1 &
    CHILD=$!
    if ! wait "$CHILD"; then
        CHILD=""
        tail -n 30 "$TMP/debootstrap.log" >&2
        if [[ -f $rootfs/debootstrap/debootstrap.log ]]; then
            tail -n 30 "$rootfs/debootstrap/debootstrap.log" >&2
        fi
        die "debootstrap $SUITE failed"
    fi
    CHILD=""
    log "debootstrap done in $((SECONDS - start)) s"

    # Trust the host's extra CAs (TLS-intercepting proxy) inside the image.
    local crt found=0
    for crt in /usr/local/share/ca-certificates/*.crt; do
        [[ -e $crt ]] || continue
        cp "$crt" "$rootfs/usr/local/share/ca-certificates/"
        found=1
    done
    ((found)) || log "no extra CA certificates in /usr/local/share/ca-certificates"
    local out
    if ! out=$(chroot "$rootfs" /usr/sbin/update-ca-certificates 2>&1); then
        printf '%s\n' "$out" >&2
        die "update-ca-certificates failed in the $SUITE rootfs"
    fi

    # Behave like the official python images: pip may install system-wide.
    rm -f "$rootfs"/usr/lib/python3*/EXTERNALLY-MANAGED
    # Slim the image a little; keep /var/lib/apt/lists empty like python:slim.
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
        "$rootfs"/debootstrap

    tar --numeric-owner -C "$rootfs" -cf "$TMP/standin.tar" .
    mv -f "$TMP/standin.tar" "$TARBALL"
    log "cached $TARBALL ($(du -h "$TARBALL" | cut -f1)) in $((SECONDS - start)) s"
    remove_tmpdir "$TMP"
    TMP=""
}

# Leftovers of a run killed with SIGKILL (or a power loss). We hold the
# suite's lock, so no other run is using them.
for stale in "$CACHE_DIR/.standin-$SUITE".*/; do
    [[ -d $stale ]] || continue
    log "removing stale ${stale%/}"
    remove_tmpdir "${stale%/}"
done

if [[ ! -s $TARBALL ]]; then
    build_rootfs_tarball
fi

start=$SECONDS
docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    - "$TAG" <"$TARBALL" >/dev/null
log "imported $TAG from $TARBALL in $((SECONDS - start)) s"
