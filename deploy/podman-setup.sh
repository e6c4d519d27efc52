#!/usr/bin/env bash
# Install and configure podman, podman-compose, runc and debootstrap (Debian 12), as the compose
# end-to-end test needs them on a machine without a Docker engine. Idempotent: a second run
# installs nothing and rewrites nothing that is already right.
#
# What the config fixes (see deploy/README.md): crun cannot raise RLIMIT_NOFILE inside this kind of
# sandbox, and the systemd cgroup manager is unavailable, so podman uses runc with cgroupfs and no
# default ulimits.
#
# The settings go into a drop-in, /etc/containers/containers.conf.d/50-tabletlog.conf, read by
# every rootful podman on the machine; nothing else under /etc/containers is touched. With
# TABLETLOG_CONTAINERS_CONF=PATH they go to PATH instead (point CONTAINERS_CONF at it yourself).
set -euo pipefail

# netavark + aardvark-dns give compose networks with service-name DNS; netavark needs iptables,
# which a minimal Debian lacks (without it: "netavark: No such file or directory").
packages=(podman podman-compose runc debootstrap iptables netavark aardvark-dns)
conf_path=${TABLETLOG_CONTAINERS_CONF:-/etc/containers/containers.conf.d/50-tabletlog.conf}

log() { printf 'podman-setup: %s\n' "$*" >&2; }

if [[ $(id -u) -ne 0 ]]; then
    log "run as root (it installs Debian packages and writes ${conf_path})"
    exit 1
fi

missing=()
for pkg in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$pkg")
    fi
done
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    log "packages already installed: ${packages[*]}"
fi

desired=$(cat <<'CONF'
# Written by tabletlog deploy/podman-setup.sh: podman inside an unprivileged-ish sandbox.
[containers]
default_ulimits = []

[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
CONF
)
if [[ -f $conf_path ]] && [[ $(cat "$conf_path") == "$desired" ]]; then
    log "config already in place: ${conf_path}"
else
    mkdir -p "$(dirname "$conf_path")"
    tmp=$(mktemp "${conf_path}.XXXXXX")
    printf '%s\n' "$desired" >"$tmp"
    chmod 0644 "$tmp"
    mv -f "$tmp" "$conf_path"
    log "wrote ${conf_path}"
fi

# A cheap end-to-end check that the runtime settings took: podman reports runc and cgroupfs.
info=$(podman info --format '{{.Host.OCIRuntime.Name}} {{.Host.CgroupManager}}' 2>/dev/null || true)
if [[ $conf_path == /etc/containers/* ]] && [[ $info != "runc cgroupfs" ]]; then
    log "podman info reports '${info}', expected 'runc cgroupfs'"
    exit 1
fi
compose_version=$(podman-compose version 2>/dev/null | awk '/podman-compose/ {print $NF; exit}')
log "ok: podman $(podman --version | awk '{print $NF}'), podman-compose ${compose_version:-?}, runtime ${info:-?}"
