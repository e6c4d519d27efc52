"""``tabletlog node``: run one node, exactly as ``python -m node`` does.

The CLI process replaces itself (``exec``) with ``python -m node``: same process id, so signals
and the exit status are the node's own, and no server module is ever imported by the client
package, which therefore works on machines where only the client is used. Runs on the CLI's
main thread.
"""

from __future__ import annotations

import argparse
import os
import sys
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
    """The arguments ``python -m node`` gets for these options."""
    argv = ["--config", str(args.config), "--node", args.node]
    if args.data_dir is not None:
        argv += ["--data-dir", str(args.data_dir)]
    return argv


def run_node(args: argparse.Namespace) -> int:
    """Become the node process; never returns (OSError when ``exec`` fails)."""
    os.execv(sys.executable, [sys.executable, "-m", "node", *node_argv(args)])  # noqa: S606 (our own argv)
