#!/usr/bin/env bash
# Build a wheelhouse for an offline image build: the tabletlog wheel of the current tree plus a
# wheel for every runtime dependency, in wheels/ (or $1). The Dockerfile installs from it with
# `pip install --no-index --find-links` when it holds any wheel, and from PyPI when it is empty.
#
# Run on the host (which reaches PyPI) with a CPython 3.11, the image's Python: wheels with C
# extensions are built or chosen for the interpreter that runs this script. Idempotent and cached:
# dependency wheels already in the wheelhouse are reused without asking PyPI, so a second run only
# rebuilds the tabletlog wheel (seconds).
#
# Usage: deploy/wheels.sh [WHEELHOUSE]      env PYTHON picks the interpreter (default python3)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
wheelhouse=${1:-$root/wheels}
python=${PYTHON:-python3}

log() { printf 'wheels: %s\n' "$*" >&2; }

version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [[ $version != 3.11 ]]; then
    log "$python is Python $version; the image runs 3.11: set PYTHON to a python3.11"
    exit 1
fi

mkdir -p "$wheelhouse"
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT

# The project wheel, always fresh: the wheelhouse must carry the code of this tree.
"$python" -m pip wheel --quiet --no-deps --wheel-dir "$build" "$root"
rm -f "$wheelhouse"/tabletlog-*.whl
mv "$build"/tabletlog-*.whl "$wheelhouse"/
project_wheel=$(ls "$wheelhouse"/tabletlog-*.whl)

# Dependencies: offline from the wheelhouse when it already has them all, else fetch what is missing.
if "$python" -m pip wheel --quiet --no-index --find-links "$wheelhouse" \
    --wheel-dir "$wheelhouse" "$project_wheel" >/dev/null 2>&1; then
    log "dependencies already in ${wheelhouse}"
else
    log "fetching dependency wheels into ${wheelhouse}"
    "$python" -m pip wheel --quiet --find-links "$wheelhouse" --wheel-dir "$wheelhouse" \
        "$project_wheel"
fi

# Prove the wheelhouse is complete the way the image will use it: resolve with no index at all.
"$python" -m pip install --quiet --dry-run --ignore-installed --no-index \
    --find-links "$wheelhouse" "$project_wheel" >/dev/null
log "ok: $(find "$wheelhouse" -name '*.whl' | wc -l) wheels in ${wheelhouse}"
