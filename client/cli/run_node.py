"""``tabletlog node``: run one node, exactly as ``python -m node`` does.

``node.__main__`` is imported only when this command runs, so the rest of the CLI starts fast and
works on machines where only the client is used. Runs on the CLI's main thread.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from pathlib import Path


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    node = commands.add_parser(
        "node",
        help="run one node of a cluster",
        description="Run one node (same as: python -m node --config CONFIG --node ID).",
    )
    node.add_argument(
        "--config", required=True, type=Path, metavar="CONFIG", help="cluster config (YAML)"
    )
    node.add_argument("--node", required=True, metavar="ID", help="this node's id in CONFIG")
    node.add_argument(
        "--data-dir", type=Path, metavar="DIR", help="override the config's data_dir for this node"
    )
    node.set_defaults(handler=run_node, sync_handler=True)


def node_argv(args: argparse.Namespace) -> list[str]:
    """The argv ``node.__main__.main`` gets for these options."""
    argv = ["--config", str(args.config), "--node", args.node]
    if args.data_dir is not None:
        argv += ["--data-dir", str(args.data_dir)]
    return argv


def run_node(args: argparse.Namespace) -> int:
    module = importlib.import_module("node.__main__")
    node_main: Callable[[list[str] | None], int] = module.main
    return node_main(node_argv(args))
