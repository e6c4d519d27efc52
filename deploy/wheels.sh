#!/usr/bin/env bash
# Build a wheelhouse for an offline image build, in wheels/ (or $1): a wheel for every runtime
# dependency of tabletlog plus the build backend (setuptools, wheel). The Dockerfile then builds
# tabletlog itself from the source in the build context with
#   pip install --no-index --find-links wheels/ .
# so the image always carries the code of the tree, never a stale project wheel. With an empty
# wheels/ the same Dockerfile installs from PyPI instead.
#
# Run on the host (which reaches PyPI) with CPython 3.11, the image's Python: wheels with C
# extensions are chosen for the interpreter that runs this script. Idempotent and cached: when the
# wheelhouse already satisfies every requirement, PyPI is not asked at all (a few seconds).
#
# Usage: deploy/wheels.sh [WHEELHOUSE]      env PYTHON picks the interpreter (default python3)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
wheelhouse=${1:-$root/wheels}
python=${PYTHON:-python3}
build_backend=("setuptools>=68" "wheel")

log() { printf 'wheels: %s\n' "$*" >&2; }

version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [[ $version != 3.11 ]]; then
    log "$python is Python $version; the image runs 3.11: set PYTHON to a python3.11"
    exit 1
fi
mkdir -p "$wheelhouse"

# Resolve exactly as the image build will: no index, no pip config of this machine, only the
# wheelhouse. --dry-run still builds tabletlog's metadata in an isolated env from the wheelhouse's
# setuptools, which is the part most likely to be missing.
offline_check() {
    env -u PIP_FIND_LINKS -u PIP_INDEX_URL -u PIP_EXTRA_INDEX_URL -u PIP_CONSTRAINT \
        PIP_CONFIG_FILE=/dev/null "$python" -m pip install --quiet --dry-run --ignore-installed \
        --no-index --find-links "$wheelhouse" "$root" >/dev/null 2>&1
}

if offline_check; then
    log "wheelhouse already complete: ${wheelhouse}"
else
    log "fetching wheels into ${wheelhouse}"
    build=$(mktemp -d)
    trap 'rm -rf "$build"' EXIT
    "$python" -m pip wheel --quiet --find-links "$wheelhouse" --wheel-dir "$build" \
        "$root" "${build_backend[@]}"
    # The project's own wheel would go stale: the image builds tabletlog from source instead.
    rm -f "$build"/tabletlog-*.whl
    cp -n "$build"/*.whl "$wheelhouse"/
    rm -f "$wheelhouse"/tabletlog-*.whl
    offline_check || { log "the wheelhouse still does not resolve offline"; exit 1; }
fi
log "ok: $(find "$wheelhouse" -maxdepth 1 -name '*.whl' | wc -l) wheels in ${wheelhouse}"
