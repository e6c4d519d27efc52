#!/usr/bin/env bash
# Build the stand-in for docker.io/library/python:3.11-slim-bookworm with debootstrap and import
# it into podman, for machines where no container registry is reachable. Idempotent and cached:
#   1. the image is already in podman's store      -> nothing to do (well under a second);
#   2. the rootfs tarball is in the cache          -> `podman import` it (seconds);
#   3. otherwise                                   -> debootstrap (a few minutes), cache, import.
# The cache lives in ${XDG_CACHE_HOME:-~/.cache}/tabletlog/ and survives `podman system reset`.
#
# The stand-in is a Debian 12 minbase with python3 and python3-venv: the Dockerfile uses only
# `python3` and `python3 -m venv`, which both this and the real image provide.
#
# Usage: deploy/base-image.sh [--force]     (--force rebuilds the rootfs even if cached)
set -euo pipefail

image=docker.io/library/python:3.11-slim-bookworm
suite=bookworm
mirror=${TABLETLOG_DEBIAN_MIRROR:-http://deb.debian.org/debian}
include=python3,python3-venv,ca-certificates
# Bump when the recipe changes so an old cached tarball is not reused.
recipe=v1
cache_dir=${XDG_CACHE_HOME:-$HOME/.cache}/tabletlog
tarball=$cache_dir/python-3.11-slim-bookworm-standin-$recipe.tar

log() { printf 'base-image: %s\n' "$*" >&2; }

force=0
case ${1:-} in
    --force) force=1 ;;
    "") ;;
    *) log "usage: $0 [--force]"; exit 2 ;;
esac

for tool in podman debootstrap; do
    command -v "$tool" >/dev/null || { log "$tool is missing: run deploy/podman-setup.sh"; exit 1; }
done

# The label tells the stand-in apart from a real pulled image, which is left alone.
standin_label() {
    podman image inspect --format '{{index .Labels "org.tabletlog.standin"}}' "$image" 2>/dev/null
}

if ((force == 0)) && podman image exists "$image"; then
    if [[ $(standin_label) == "$recipe" || -z $(standin_label) ]]; then
        log "image ${image} is present"
        exit 0
    fi
fi

if ((force == 1)) || [[ ! -s $tarball ]]; then
    [[ $(id -u) -eq 0 ]] || { log "debootstrap needs root"; exit 1; }
    mkdir -p "$cache_dir"
    work=$(mktemp -d "$cache_dir/rootfs.XXXXXX")
    # Remove the half-built rootfs on any exit; --one-file-system guards against mounts left inside.
    trap 'rm -rf --one-file-system "$work"' EXIT
    log "debootstrap ${suite} (minbase + ${include}) from ${mirror}: a few minutes"
    started=$SECONDS
    debootstrap --variant=minbase --include="$include" "$suite" "$work/rootfs" "$mirror" \
        >"$work/debootstrap.log" 2>&1 || { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }
    # What a slim image does not ship: package lists, caches, docs. Keeps the tarball small.
    rm -rf "$work"/rootfs/var/lib/apt/lists/* "$work"/rootfs/var/cache/apt/*.bin \
        "$work"/rootfs/var/cache/apt/archives/*.deb "$work"/rootfs/usr/share/doc/* \
        "$work"/rootfs/usr/share/man/* "$work"/rootfs/usr/share/locale/* \
        "$work"/rootfs/var/log/* "$work"/rootfs/tmp/*
    # The real image resolves names through /etc/resolv.conf given by the runtime; leave none baked.
    rm -f "$work/rootfs/etc/resolv.conf" "$work/rootfs/etc/hostname"
    tar --numeric-owner -C "$work/rootfs" -cf "$work/rootfs.tar" .
    mv -f "$work/rootfs.tar" "$tarball"
    log "cached $(du -h "$tarball" | cut -f1) rootfs at ${tarball} in $((SECONDS - started)) s"
fi

log "importing ${tarball} as ${image}"
podman import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["python3"]' \
    --change "LABEL org.tabletlog.standin=$recipe" \
    --quiet "$tarball" "$image" >/dev/null
podman run --rm "$image" python3 -c 'import sys, venv, ensurepip; print("base-image: python", sys.version.split()[0])' >&2
