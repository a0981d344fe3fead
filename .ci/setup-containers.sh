#!/usr/bin/env bash
# Real containers for modelport's image tests, without a Docker daemon:
#
#   1. installs podman, buildah and friends from Debian (skipped when present);
#   2. writes a containers.conf this sandbox can live with (no raising of resource limits, runc,
#      cgroupfs, file events) and marks the local registry 127.0.0.1:5000 as insecure (plain HTTP);
#   3. starts `podman system service` on a unix socket: the Docker Engine API that docker-py and
#      the docker CLI speak (DOCKER_HOST=unix://...);
#   4. builds a Debian base image with only python3 + python3-venv (debootstrap, ~1 min) once and
#      keeps it: skipped while `podman image exists` says it is there;
#   5. starts a local registry (Debian's docker-registry) on 127.0.0.1:5000 for push tests.
#
# Idempotent: every step checks first, so rerunning it is cheap (a second or two).
#
# Use it either way:
#   source .ci/setup-containers.sh     # does the work in a child shell, then exports the env
#   .ci/setup-containers.sh            # does the work; then: source "$MODELPORT_CONTAINERS_DIR/env.sh"
#
# Exports (env.sh): DOCKER_HOST, CONTAINERS_CONF, MODELPORT_TEST_BASE_IMAGE,
# MODELPORT_TEST_REGISTRY and MODELPORT_REQUIRE_CONTAINERS=1 (the image tests then fail instead of
# skipping when something is missing: a skip in CI would hide a broken setup).

_mp_state_dir="${MODELPORT_CONTAINERS_DIR:-/var/tmp/modelport-containers}"

# Sourced: run the real work in a child bash (its `set -e` and traps stay out of the caller's shell),
# then export what it wrote.
if [[ "${BASH_SOURCE[0]}" != "$0" ]]; then
    if bash "${BASH_SOURCE[0]}"; then
        # shellcheck disable=SC1091
        source "$_mp_state_dir/env.sh"
        unset _mp_state_dir
        return 0
    fi
    unset _mp_state_dir
    return 1
fi

set -euo pipefail

STATE="$_mp_state_dir"
SOCKET="$STATE/podman.sock"
BASE_IMAGE="${MODELPORT_TEST_BASE_IMAGE:-localhost/modelport-ci/debian-python:bookworm}"
REGISTRY="127.0.0.1:5000"
SUITE="bookworm"
PACKAGES=(podman buildah skopeo umoci runc crun fuse-overlayfs uidmap slirp4netns
    containernetworking-plugins catatonit debootstrap docker-registry iptables)

log() { printf '[setup-containers] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

mkdir -p "$STATE"
export CONTAINERS_CONF="$STATE/containers.conf"

# --- 1. packages ---------------------------------------------------------------------------------
missing=()
for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    [[ $(id -u) == 0 ]] || die "run as root to install: ${missing[*]}"
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    install_packages() {
        apt-get install -y -q --no-install-recommends "${missing[@]}" >"$STATE/apt.log" 2>&1
    }
    # A fresh machine may have stale or no package lists: update once and retry.
    if ! install_packages; then
        for attempt in 1 2 3; do
            apt-get update -q >>"$STATE/apt.log" 2>&1 && install_packages && break
            [[ $attempt == 3 ]] && { tail -n 30 "$STATE/apt.log" >&2; die "apt-get failed"; }
            sleep $((attempt * 5))
        done
    fi
fi

# --- 2. configuration ----------------------------------------------------------------------------
# This sandbox cannot raise rlimits: podman's defaults (nofile 1048576) make every container fail.
cat >"$CONTAINERS_CONF" <<'EOF'
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
mkdir -p /etc/containers/registries.conf.d
cat >/etc/containers/registries.conf.d/50-modelport-ci.conf <<EOF
# Written by modelport's .ci/setup-containers.sh: the local test registry speaks plain HTTP.
[[registry]]
location = "$REGISTRY"
insecure = true
EOF

# --- 3. the Docker-compatible API ----------------------------------------------------------------
api_up() { podman --remote --url "unix://$SOCKET" version >/dev/null 2>&1; }
# A service whose working directory was removed (a deleted checkout) answers the API but fails
# every container start ("write child: broken pipe"): replace it.
stale=$(pgrep -f "podman system service --time=0 unix://$SOCKET" | head -n 1 || true)
if [[ -n "$stale" && "$(readlink "/proc/$stale/cwd")" == *"(deleted)" ]]; then
    log "replacing a podman service that runs in a removed directory"
    kill "$stale" && sleep 1
fi
if ! api_up; then
    log "starting podman system service on $SOCKET"
    rm -f "$SOCKET"
    # chroot isolation: builds need no extra privileges and share the host network (pip reaches
    # the package index). setsid + nohup: the service outlives this script.
    # Started from /, so removing the checkout later cannot break it.
    (cd / && BUILDAH_ISOLATION=chroot exec nohup setsid podman system service --time=0 \
        "unix://$SOCKET" >>"$STATE/podman-service.log" 2>&1 </dev/null) &
    echo $! >"$STATE/podman-service.pid"
    for _ in $(seq 1 60); do api_up && break; sleep 0.5; done
    api_up || { tail -n 30 "$STATE/podman-service.log" >&2; die "podman service did not start"; }
fi

# --- 4. the base image ---------------------------------------------------------------------------
if ! podman image exists "$BASE_IMAGE"; then
    mirror="${DEBIAN_MIRROR:-}"
    if [[ -z "$mirror" ]]; then
        # The machine's own Debian mirror: a deb822 URIs: line, else a one-line sources.list entry.
        mirror=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' \
            | grep -v security | head -n 1 || true)
        [[ -n "$mirror" ]] || mirror=$(grep -hs '^deb ' /etc/apt/sources.list \
            /etc/apt/sources.list.d/*.list | awk '{print $2}' | grep -v security | head -n 1 || true)
        mirror="${mirror:-http://deb.debian.org/debian}"
    fi
    rootfs="$STATE/rootfs"
    rm -rf "$rootfs"
    log "building $BASE_IMAGE with debootstrap from $mirror (about a minute)"
    debootstrap --variant=minbase --include=python3,python3-venv "$SUITE" "$rootfs" "$mirror" \
        >"$STATE/debootstrap.log" 2>&1 || { tail -n 30 "$STATE/debootstrap.log" >&2; die "debootstrap failed"; }
    # What an official slim image leaves out too: package caches and lists.
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
        "$rootfs"/var/cache/debconf/*-old "$rootfs"/var/log/*
    tar --numeric-owner -C "$rootfs" -c . | podman import --quiet \
        --change 'CMD ["/usr/bin/python3"]' --change 'ENV LANG=C.UTF-8' - "$BASE_IMAGE" >/dev/null
    rm -rf "$rootfs"
fi

# --- 5. the local registry -----------------------------------------------------------------------
registry_up() {
    python3 -c "import urllib.request as u; u.urlopen('http://$REGISTRY/v2/', timeout=2)" 2>/dev/null
}
if ! registry_up; then
    log "starting docker-registry on $REGISTRY"
    mkdir -p "$STATE/registry"
    cat >"$STATE/registry.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $STATE/registry
  delete:
    enabled: true
http:
  addr: $REGISTRY
EOF
    (cd / && exec nohup setsid docker-registry serve "$STATE/registry.yml" \
        >>"$STATE/registry.log" 2>&1 </dev/null) &
    echo $! >"$STATE/registry.pid"
    for _ in $(seq 1 40); do registry_up && break; sleep 0.25; done
    registry_up || { tail -n 30 "$STATE/registry.log" >&2; die "registry did not start"; }
fi

cat >"$STATE/env.sh" <<EOF
# Written by .ci/setup-containers.sh
export DOCKER_HOST="unix://$SOCKET"
export CONTAINERS_CONF="$CONTAINERS_CONF"
export MODELPORT_TEST_BASE_IMAGE="$BASE_IMAGE"
export MODELPORT_TEST_REGISTRY="$REGISTRY"
export MODELPORT_REQUIRE_CONTAINERS=1
EOF
log "ready: DOCKER_HOST=unix://$SOCKET base=$BASE_IMAGE registry=$REGISTRY (env in $STATE/env.sh)"
