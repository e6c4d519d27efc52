"""Container healthcheck: exit 0 when the tabletlog node in this container answers ``/readyz``.

Runs inside the image with only the standard library and PyYAML (a tabletlog dependency); no curl.

    python /opt/tabletlog/healthcheck.py            # find the node's own API address
    python /opt/tabletlog/healthcheck.py URL        # or check this URL

Without a URL it reads the ``--config`` and ``--node`` arguments of the ``python -m node``
process running in the container (from ``/proc``), looks the node up in that config and asks
``http://<bind address>:<api_port>/readyz`` (``127.0.0.1`` when the node binds all addresses). So
the image's ``HEALTHCHECK`` needs no per-node setting, whatever config the container runs.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

import yaml

TIMEOUT_S = 2.5
_ANY_ADDRESS = {"0.0.0.0", "::", "[::]", ""}  # noqa: S104 -- recognising, not binding


def node_argv(proc: Path = Path("/proc")) -> list[str]:
    """The argv of the first ``python -m node`` (or ``tabletlog node``) process found.

    Raises LookupError if there is none.
    """
    for cmdline in _cmdlines(proc):
        for i in range(len(cmdline) - 1):
            starts_node = cmdline[i] == "-m" or Path(cmdline[i]).name == "tabletlog"
            if starts_node and cmdline[i + 1] == "node":
                return cmdline
    raise LookupError("no `python -m node` process in this container")


def _cmdlines(proc: Path) -> Iterator[list[str]]:
    for entry in sorted(proc.iterdir(), key=lambda p: (len(p.name), p.name)):
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        yield [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def option(argv: Sequence[str], name: str) -> str:
    """The value of ``--name VALUE`` or ``--name=VALUE`` in argv; raises LookupError if absent."""
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    raise LookupError(f"the node process has no {name} argument")


def readyz_url(config_path: str, node_id: str) -> str:
    """``/readyz`` of node_id's API as reachable from inside its own container."""
    raw = yaml.safe_load(Path(config_path).read_text())
    for entry in raw.get("nodes", []) if isinstance(raw, dict) else []:
        if isinstance(entry, dict) and entry.get("id") == node_id:
            host = str(entry.get("bind") or entry.get("host") or "")
            if host in _ANY_ADDRESS:
                host = "127.0.0.1"
            if ":" in host and not host.startswith("["):
                host = f"[{host}]"
            return f"http://{host}:{int(entry['api_port'])}/readyz"
    raise LookupError(f"node {node_id!r} is not in {config_path}")


def check(url: str) -> tuple[bool, str]:
    """(ready, one-line reason)."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:  # noqa: S310 -- http URL built above
            return response.status == 200, f"{url}: {response.status}"
    except urllib.error.HTTPError as exc:
        return False, f"{url}: {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return False, f"{url}: {exc}"


def main(argv: Sequence[str]) -> int:
    try:
        if argv:
            url = argv[0]
        else:
            node = node_argv()
            url = readyz_url(option(node, "--config"), option(node, "--node"))
    except (LookupError, OSError, ValueError, KeyError, yaml.YAMLError) as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    ready, reason = check(url)
    print(("ready: " if ready else "not ready: ") + reason, file=sys.stderr)
    return 0 if ready else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
