"""What every ``tabletlog`` command shares: exit codes, the parser class, output, the client.

Exit codes mean one thing each, so scripts can branch on them:

- 0 ``EXIT_OK``: done.
- 1 ``EXIT_CLUSTER``: the cluster answered with an error (a missing log, too few replicas, ...).
- 2 ``EXIT_USAGE``: the command line is wrong (argparse's own convention).
- 3 ``EXIT_UNREACHABLE``: no node could be reached.
- 130 ``EXIT_INTERRUPTED``: stopped by Ctrl-C where that is not the normal way to end.

Errors are one line on stderr: ``tabletlog: error: <what went wrong>``. Human output uses rich
tables on stdout; ``--json`` prints exactly one JSON document (or JSON lines for streams) and
nothing else on stdout. Functions here run on the CLI's main thread; not meant to be shared.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from rich.console import Console

from client.async_client import AsyncClient
from client.errors import ClusterUnreachable, ConnectionFailed, DeliveryTimeout
from client.metadata import parse_bootstrap

EXIT_OK = 0
EXIT_CLUSTER = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130

BOOTSTRAP_ENV = "TABLETLOG_BOOTSTRAP"
DEFAULT_BOOTSTRAP = "127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103"


class UsageError(Exception):
    """A command-line mistake found after parsing (a bad ``--from``, say): exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``tabletlog log create: error: ... (see --help)``."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def stdout_console() -> Console:
    """Console for human output: colours only on a terminal.

    When stdout is not a terminal (a pipe, a file, CI logs) rich would assume 80 columns and
    squeeze the tables; give it room instead so every table keeps its natural width.
    """
    width = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 200
    return Console(highlight=False, soft_wrap=False, width=width)


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False)


def exit_code_for(exc: BaseException) -> int:
    """The exit status for an error that ends a command (see the module docstring)."""
    if isinstance(exc, UsageError):
        return EXIT_USAGE
    if isinstance(exc, ConnectionFailed):
        return EXIT_UNREACHABLE
    if isinstance(exc, DeliveryTimeout) and isinstance(exc.last_error, ClusterUnreachable):
        return EXIT_UNREACHABLE
    return EXIT_CLUSTER


def print_json(value: Any) -> None:
    """One JSON document on stdout (no colours, stable key order as given)."""
    sys.stdout.write(json.dumps(value, indent=2) + "\n")
    sys.stdout.flush()


def print_json_line(value: Any) -> None:
    """One compact JSON line (for streams such as ``consume --json``)."""
    sys.stdout.write(json.dumps(value, separators=(",", ":")) + "\n")


def print_error(message: str) -> None:
    """The one-line error on stderr; newlines in server messages are folded."""
    line = " ".join(message.split())
    sys.stderr.write(f"tabletlog: error: {line}\n")
    sys.stderr.flush()


def add_client_options(parser: argparse.ArgumentParser, *, top_level: bool) -> None:
    """``--bootstrap`` and ``--timeout``, accepted before or after the subcommand.

    On subcommands the defaults are suppressed so a value given before the subcommand is not
    overwritten by the subcommand's default.
    """
    default: Any = None if top_level else argparse.SUPPRESS
    parser.add_argument(
        "--bootstrap",
        metavar="HOST:PORT[,HOST:PORT]",
        default=default,
        help=f"nodes to contact first (default: ${BOOTSTRAP_ENV} or {DEFAULT_BOOTSTRAP})",
    )
    parser.add_argument(
        "--timeout",
        type=positive_float,
        metavar="SECONDS",
        default=default,
        help="timeout of each request (default 10)",
    )


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable JSON output")


def bootstrap_from(args: argparse.Namespace) -> list[str]:
    """The bootstrap list: ``--bootstrap``, else $TABLETLOG_BOOTSTRAP, else the local default."""
    raw = getattr(args, "bootstrap", None) or os.environ.get(BOOTSTRAP_ENV) or DEFAULT_BOOTSTRAP
    try:
        return parse_bootstrap(raw)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def make_client(args: argparse.Namespace) -> AsyncClient:
    """An AsyncClient from the global options; call inside the running event loop."""
    timeout_s = getattr(args, "timeout", None) or 10.0
    return AsyncClient(bootstrap_from(args), timeout_s=timeout_s)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} cannot be negative")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return value


def text_of(data: bytes | None) -> str | None:
    """Bytes as text for display: UTF-8 with replacement characters for anything else."""
    return None if data is None else data.decode("utf-8", "replace")


def json_bytes_fields(name: str, data: bytes | None) -> dict[str, Any]:
    """``{name: text}`` when ``data`` is UTF-8, else ``{name_b64: base64}`` (as the API does)."""
    if data is None:
        return {name: None}
    try:
        return {name: data.decode("utf-8")}
    except UnicodeDecodeError:
        return {f"{name}_b64": base64.b64encode(data).decode("ascii")}


def join_ids(ids: Sequence[str]) -> str:
    return ",".join(ids) if ids else "-"
