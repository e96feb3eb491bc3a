#!/usr/bin/env bash
# Ensure a working Docker engine on a Debian 12 CI machine (root, no systemd).
#
# Usage: .ci/docker-engine.sh
#   Idempotent: if `docker info` already answers, it does nothing. Otherwise it
#   installs Debian's docker.io + debootstrap (only if missing), starts Debian's
#   dockerd in the background and waits until `docker info` answers.
#
# Environment (all optional):
#   DOCKERD_LOG      dockerd log file            (default /tmp/dockerd.log)
#   DOCKERD_TIMEOUT  seconds to wait for engine  (default 60)
#
# Notes (measured on this project's machines, Debian 12):
# - The machine ships a Docker CLI 28.x at /usr/local/bin/docker, which comes
#   before Debian's /usr/bin/docker (20.10) in PATH. Debian's engine is 20.10
#   (API 1.41). The 28.x client negotiates the API version down by itself
#   ("API version: 1.41 (downgraded from 1.50)"), so both clients work and no
#   DOCKER_API_VERSION is needed. Do NOT export DOCKER_API_VERSION to anything
#   above 1.41: that disables negotiation and every call fails with
#   "client version 1.50 is too new. Maximum supported API version is 1.41".
# - There is no buildx plugin and the engine has no BuildKit enabled, so
#   `docker build` uses the legacy builder with either client. Do not set
#   DOCKER_BUILDKIT=1 (the 28.x client then fails: "BuildKit is enabled but
#   the buildx component is missing or broken").
# - We always start /usr/sbin/dockerd (Debian's), never whatever `dockerd`
#   PATH finds first. It launches its own containerd; storage driver overlay2,
#   cgroupfs (v1), iptables via iptables-nft all work out of the box.
set -euo pipefail

DOCKERD_LOG=${DOCKERD_LOG:-/tmp/dockerd.log}
DOCKERD_TIMEOUT=${DOCKERD_TIMEOUT:-60}
DOCKERD=/usr/sbin/dockerd
PIDFILE=/var/run/docker.pid

log() { printf '[docker-engine] %s\n' "$*" >&2; }
# dockerd's log is chatty (grpc); the real error is usually the last line.
show_log_tail() { grep -v 'module=grpc' "$DOCKERD_LOG" | tail -n 20 >&2 || true; }

engine_up() {
    # Any client on PATH (28.x or 20.10) works; fall back to Debian's client
    # if there is none on PATH yet.
    local client
    client=$(command -v docker || true)
    [[ -n $client ]] || client=/usr/bin/docker
    [[ -x $client ]] && "$client" info >/dev/null 2>&1
}

if engine_up; then
    log "engine already running"
    exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
    log "error: docker engine not running and not root; cannot install/start it"
    exit 1
fi

# Install only what is missing (dpkg status, not PATH: /usr/local/bin/docker
# is a client only and says nothing about the engine).
missing=()
dpkg-query -W -f='${Status}' docker.io 2>/dev/null | grep -q 'ok installed' \
    || missing+=(docker.io)
dpkg-query -W -f='${Status}' debootstrap 2>/dev/null | grep -q 'ok installed' \
    || missing+=(debootstrap)
if ((${#missing[@]})); then
    log "installing: ${missing[*]}"
    start=$SECONDS
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y --no-install-recommends docker.io debootstrap
    log "installed in $((SECONDS - start)) s"
fi

if [[ ! -x $DOCKERD ]]; then
    log "error: $DOCKERD not found after installing docker.io"
    exit 1
fi

# Is a dockerd from an earlier run still alive (e.g. still starting up)?
running_pid=""
if [[ -s $PIDFILE ]]; then
    pid=$(<"$PIDFILE")
    if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null \
        && [[ $(readlink -f "/proc/$pid/exe" 2>/dev/null || true) == "$DOCKERD" ]]; then
        running_pid=$pid
    else
        log "removing stale $PIDFILE (pid $pid)"
        rm -f "$PIDFILE"
    fi
fi

if [[ -n $running_pid ]]; then
    log "dockerd (pid $running_pid) already running; waiting for it"
else
    log "starting $DOCKERD (log: $DOCKERD_LOG)"
    # setsid + nohup: detach fully so dockerd outlives this script and its
    # session; stdin from /dev/null so callers' pipes are not held open.
    setsid nohup "$DOCKERD" </dev/null >>"$DOCKERD_LOG" 2>&1 &
    running_pid=$!
fi

start=$SECONDS
until engine_up; do
    if ! kill -0 "$running_pid" 2>/dev/null && ! [[ -s $PIDFILE ]]; then
        log "error: dockerd exited; last lines of $DOCKERD_LOG:"
        show_log_tail
        exit 1
    fi
    if ((SECONDS - start >= DOCKERD_TIMEOUT)); then
        log "error: docker engine did not answer within ${DOCKERD_TIMEOUT} s;" \
            "last lines of $DOCKERD_LOG:"
        show_log_tail
        exit 1
    fi
    sleep 0.5
done
log "engine ready after $((SECONDS - start)) s"
