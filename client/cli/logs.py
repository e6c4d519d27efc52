"""``tabletlog log create|list|describe|delete``. Runs on the CLI's main thread."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from client.cli.common import (
    EXIT_OK,
    UsageError,
    add_client_options,
    add_json_option,
    make_client,
    positive_int,
    print_json,
    stdout_console,
)
from client.cli.status import describe_renderable


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    log = commands.add_parser(
        "log",
        help="create, list, describe and delete logs",
        description="Manage logs: create, list, describe, delete.",
    )
    actions = log.add_subparsers(dest="log_command", metavar="ACTION", required=True)

    create = actions.add_parser(
        "create",
        help="create a log",
        description="Create a log; settings not given come from the cluster's log_defaults.",
    )
    create.add_argument("name", metavar="NAME")
    create.add_argument("--tablets", type=positive_int, metavar="N")
    create.add_argument("--replication-factor", type=positive_int, metavar="N")
    create.add_argument(
        "--min-insync",
        type=positive_int,
        metavar="N",
        help="min_insync_replicas: acks=all needs this many in-sync replicas",
    )
    create.add_argument("--retention-ms", type=_optional_int, metavar="MS|none")
    create.add_argument("--retention-bytes", type=_optional_int, metavar="BYTES|none")
    create.add_argument("--segment-bytes", type=positive_int, metavar="BYTES")
    create.add_argument("--fsync", type=_fsync, metavar="always|never|MS")
    for action in create._actions:
        if action.dest not in ("help", "name"):
            action.default = argparse.SUPPRESS  # absent unless given: the cluster decides
    create.set_defaults(handler=run_create)

    listing = actions.add_parser("list", help="list the logs' names")
    listing.set_defaults(handler=run_list)

    describe = actions.add_parser("describe", help="settings and tablets of a log")
    describe.add_argument("name", metavar="NAME")
    describe.set_defaults(handler=run_describe)

    delete = actions.add_parser("delete", help="delete a log and its data")
    delete.add_argument("name", metavar="NAME")
    delete.set_defaults(handler=run_delete)

    for sub in (create, listing, describe, delete):
        add_client_options(sub, top_level=False)
        add_json_option(sub)


def _optional_int(text: str) -> int | None:
    """An int ≥ 1, or ``none``/``null`` for "no limit" (sent as JSON null)."""
    if text.lower() in ("none", "null"):
        return None
    return positive_int(text)


def _fsync(text: str) -> str | int:
    if text in ("always", "never"):
        return text
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not 'always', 'never' or a number of milliseconds"
        ) from None


def settings_from(args: argparse.Namespace) -> dict[str, Any]:
    """The ``POST /v1/logs`` fields the user gave (absent options are left to the cluster)."""
    names = {
        "tablets": "tablets",
        "replication_factor": "replication_factor",
        "min_insync": "min_insync_replicas",
        "retention_ms": "retention_ms",
        "retention_bytes": "retention_bytes",
        "segment_bytes": "segment_bytes",
        "fsync": "fsync",
    }
    settings: dict[str, Any] = {}
    for attr, field in names.items():
        if hasattr(args, attr):  # options not given are absent (argparse.SUPPRESS)
            settings[field] = getattr(args, attr)
    if (
        "replication_factor" in settings
        and "min_insync_replicas" in settings
        and settings["min_insync_replicas"] > settings["replication_factor"]
    ):
        raise UsageError("--min-insync cannot exceed --replication-factor")
    return settings


async def run_create(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    async with make_client(args) as client:
        description = await client.create_log(args.name, **settings)
    if args.json:
        print_json(description.to_dict())
    else:
        console = stdout_console()
        console.print(
            f"created log [bold]{description.name}[/] with {description.tablet_count} tablets"
        )
        console.print(describe_renderable(description))
    return EXIT_OK


async def run_list(args: argparse.Namespace) -> int:
    async with make_client(args) as client:
        names = await client.list_logs()
    if args.json:
        print_json({"logs": names})
    else:
        for name in names:
            sys.stdout.write(name + "\n")
    return EXIT_OK


async def run_describe(args: argparse.Namespace) -> int:
    async with make_client(args) as client:
        description = await client.describe_log(args.name)
    if args.json:
        print_json(description.to_dict())
    else:
        stdout_console().print(describe_renderable(description))
    return EXIT_OK


async def run_delete(args: argparse.Namespace) -> int:
    async with make_client(args) as client:
        await client.delete_log(args.name)
    if args.json:
        print_json({"deleted": args.name})
    else:
        stdout_console().print(f"deleted log [bold]{args.name}[/]")
    return EXIT_OK
