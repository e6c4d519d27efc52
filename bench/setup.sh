#!/usr/bin/env bash
# Install what `make bench` needs, idempotently: nats-server (Debian package, for the NATS
# JetStream peer) and nats-py + psutil (into the repo venv). Safe to run on every `make bench`:
# it only calls apt-get / pip when something is missing.
#
#   bash bench/setup.sh              # both
#   bash bench/setup.sh --nats-only  # just nats-server (what bench/nats_cluster.py runs)
#
# VENV overrides the venv path (default: <repo>/.venv, as in the Makefile).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
NATS_ONLY=0
[[ "${1:-}" == "--nats-only" ]] && NATS_ONLY=1

have_nats() { command -v nats-server >/dev/null 2>&1 || [[ -x /usr/sbin/nats-server ]]; }

if have_nats; then
    echo "setup: nats-server present"
else
    SUDO=()
    if [[ "$(id -u)" -ne 0 ]]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
            SUDO=(sudo -n)
        else
            echo "setup: nats-server missing and not root; run: sudo apt-get install -y nats-server" >&2
            exit 1
        fi
    fi
    export DEBIAN_FRONTEND=noninteractive
    echo "setup: installing nats-server with apt-get"
    if ! "${SUDO[@]}" apt-get install -y -q nats-server; then
        # A fresh machine may have no package lists yet.
        "${SUDO[@]}" apt-get update -q
        "${SUDO[@]}" apt-get install -y -q nats-server
    fi
    have_nats || { echo "setup: nats-server still missing after apt-get" >&2; exit 1; }
fi

if [[ "$NATS_ONLY" -eq 1 ]]; then
    exit 0
fi

if [[ ! -x "$VENV/bin/python" ]]; then
    echo "setup: no venv at $VENV; run: make setup   (or python3 -m venv .venv && .venv/bin/pip install -e '.[dev,bench]')" >&2
    exit 1
fi
if "$VENV/bin/python" -c "import nats, psutil" 2>/dev/null; then
    echo "setup: nats-py and psutil present in $VENV"
else
    echo "setup: installing nats-py and psutil into $VENV"
    # Same bounds as pyproject's [bench] extra.
    "$VENV/bin/pip" install -q "nats-py>=2.6,<3" "psutil>=5.9,<8"
fi
