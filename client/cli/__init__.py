"""The ``tabletlog`` command: ``main(argv)`` parses, dispatches and maps errors to exit codes.

One module per command group (``logs``, ``produce``, ``consume``, ``status``, ``dev``, ``bench``,
``run_node``); each registers its parser and a handler. Async handlers run in a fresh event loop
(``asyncio.run``); ``tabletlog node`` runs synchronously because the node owns its own loop. Exit
codes and the one-line error format are defined in ``client.cli.common``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from typing import Any, cast

from client.cli import bench, consume, dev, logs, produce, run_node, status
from client.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    Parser,
    UsageError,
    add_client_options,
    exit_code_for,
    print_error,
)
from client.errors import ClientError

__all__ = ["build_parser", "main"]


def build_parser() -> Parser:
    parser = Parser(
        prog="tabletlog",
        description="tabletlog: a replicated distributed log. Run a local cluster with "
        "'tabletlog dev up', then create logs, produce and consume.",
    )
    add_client_options(parser, top_level=True)
    # subparsers are of the parent's class (Parser) at run time: one-line errors everywhere
    commands = cast(
        "argparse._SubParsersAction[argparse.ArgumentParser]",
        parser.add_subparsers(dest="command", metavar="COMMAND", required=True),
    )
    run_node.register(commands)
    dev.register(commands)
    logs.register(commands)
    produce.register(commands)
    consume.register(commands)
    status.register(commands)
    bench.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``tabletlog`` command; returns the process exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2), already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        return _dispatch(args)
    except UsageError as exc:
        print_error(str(exc))
        return EXIT_USAGE
    except ClientError as exc:
        print_error(exc.message)
        return exit_code_for(exc)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # the reader went away (``| head``): not an error; silence the flush at exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK


def _dispatch(args: argparse.Namespace) -> int:
    handler: Any = args.handler
    if getattr(args, "sync_handler", False):
        return int(handler(args))
    return int(asyncio.run(handler(args)))


if __name__ == "__main__":
    sys.exit(main())
