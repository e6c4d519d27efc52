"""``tabletlog dev up``: a local cluster in one command, with a live status table.

Starts the nodes as child processes (see ``local_cluster``), waits for ``/readyz``, prints the
endpoints, then redraws a status table every second until Ctrl-C or SIGTERM, and stops the nodes
cleanly (SIGTERM, a grace period, SIGKILL) before exiting 0. Creates no logs.

Config: ``--config`` if given; otherwise ``cluster-configs/local-3.yaml`` for three nodes when it
exists; otherwise a config generated in the data directory (kept, so restarts find the same
ports and secret), on the conventional ports 7101.../7201... when free, else on free ports.
Runs on the CLI's main thread.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path

from rich.console import Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from client.async_client import AsyncClient
from client.cli.common import (
    BOOTSTRAP_ENV,
    EXIT_CLUSTER,
    EXIT_OK,
    UsageError,
    positive_float,
    positive_int,
    print_error,
    stdout_console,
)
from client.cli.local_cluster import (
    ClusterStartError,
    ConfigUnreadable,
    LocalCluster,
    generate_config,
    ports_free,
    read_nodes,
)
from client.cli.status import nodes_table, render_status
from client.errors import ClientError

DEFAULT_CONFIG = Path("cluster-configs/local-3.yaml")
_REFRESH_S = 1.0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dev = commands.add_parser(
        "dev",
        help="run a local cluster for development",
        description="Run a local multi-node cluster as child processes.",
    )
    actions = dev.add_subparsers(dest="dev_command", metavar="ACTION", required=True)
    up = actions.add_parser(
        "up",
        help="start a local cluster and show its status until Ctrl-C",
        description="Start the nodes, wait until they are ready, print the endpoints and show "
        "a live status table; Ctrl-C stops every node.",
    )
    up.add_argument(
        "--nodes", type=positive_int, default=None, metavar="N", help="number of nodes (default 3)"
    )
    up.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="CONFIG",
        help=f"cluster config (default {DEFAULT_CONFIG} for 3 nodes)",
    )
    up.add_argument(
        "--data-dir",
        type=Path,
        default=Path("data"),
        metavar="DIR",
        help="node data and logs go under DIR/<node> and DIR/<node>.log (default ./data)",
    )
    up.add_argument(
        "--ready-timeout",
        type=positive_float,
        default=60.0,
        metavar="SECONDS",
        help="how long to wait for every node to be ready (default 60)",
    )
    up.add_argument(
        "--no-live",
        action="store_true",
        help="print the endpoints, then wait quietly (default when not a terminal)",
    )
    up.set_defaults(handler=run_up)


def choose_config(args: argparse.Namespace) -> Path:
    """The config to run (see the module docstring); may write a generated one."""
    if args.config is not None:
        try:
            count = len(read_nodes(args.config)[1])
        except ConfigUnreadable as exc:
            raise UsageError(str(exc)) from None
        if args.nodes is not None and args.nodes != count:
            raise UsageError(f"{args.config} has {count} nodes, not --nodes {args.nodes}")
        return Path(args.config)
    nodes = args.nodes or 3
    if nodes == 3 and DEFAULT_CONFIG.exists():
        return DEFAULT_CONFIG
    generated = Path(args.data_dir) / f"cluster-{nodes}.yaml"
    if generated.exists():
        return generated
    conventional = [(7101 + i, 7201 + i) for i in range(nodes)]
    flat = [port for pair in conventional for port in pair]
    ports = conventional if nodes <= 99 and ports_free(flat) else None
    return generate_config(generated, nodes=nodes, data_dir=Path(args.data_dir), ports=ports)


async def run_up(args: argparse.Namespace) -> int:
    config = choose_config(args)
    cluster = LocalCluster(config, Path(args.data_dir))
    console = stdout_console()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        console.print(
            f"starting {len(cluster.node_ids)} nodes from {config} "
            f"(logs in {args.data_dir}/<node>.log)"
        )
        cluster.start()
        if not await _wait_ready(cluster, args.ready_timeout, stop):
            return EXIT_OK  # interrupted while starting
        _print_endpoints(cluster)
        live = not args.no_live and sys.stdout.isatty()
        await _watch(cluster, stop, live=live)
        return EXIT_OK
    except ClusterStartError as exc:
        print_error(str(exc))
        return EXIT_CLUSTER
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        console.print("stopping nodes...")
        await asyncio.to_thread(cluster.stop)
        console.print("stopped")


async def _wait_ready(cluster: LocalCluster, timeout_s: float, stop: asyncio.Event) -> bool:
    """Poll until every node is ready; False if interrupted. Raises ClusterStartError."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    waiting = cluster.node_ids
    while waiting:
        cluster.check_alive(waiting)
        waiting = await asyncio.to_thread(cluster.not_ready, waiting)
        if not waiting:
            break
        if asyncio.get_running_loop().time() > deadline:
            tails = "; ".join(f"{n}: {cluster.log_tail(n, 1) or 'no output'}" for n in waiting)
            raise ClusterStartError(
                f"node(s) {', '.join(waiting)} not ready after {timeout_s:g} s; {tails}"
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.25)
        if stop.is_set():
            return False
    return True


def _print_endpoints(cluster: LocalCluster) -> None:
    console = stdout_console()
    table = Table(title=f"cluster {cluster.name} is ready", title_justify="left")
    table.add_column("node")
    table.add_column("HTTP API")
    table.add_column("pid", justify="right")
    table.add_column("log")
    for node_id, address in cluster.addresses.items():
        table.add_row(
            node_id, f"http://{address}", str(cluster.pid(node_id)), str(cluster.log_path(node_id))
        )
    console.print(table)
    console.print(f"export {BOOTSTRAP_ENV}={cluster.bootstrap}")
    console.print(
        "try: tabletlog log create events && echo hello | tabletlog produce events "
        "&& tabletlog consume events"
    )


async def _watch(cluster: LocalCluster, stop: asyncio.Event, *, live: bool) -> None:
    """Show the status until ``stop``; without ``live``, only report nodes that exit."""
    async with AsyncClient(cluster.bootstrap, timeout_s=2.0) as client:
        if not live:
            reported: set[str] = set()
            while not stop.is_set():
                for node_id in cluster.node_ids:
                    code = cluster.exit_code(node_id)
                    if code is not None and node_id not in reported:
                        reported.add(node_id)
                        print_error(
                            f"node {node_id} exited with status {code}; "
                            f"see {cluster.log_path(node_id)}"
                        )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), _REFRESH_S)
            return
        with Live(
            await _snapshot(cluster, client),
            console=stdout_console(),
            auto_refresh=False,
            transient=False,
        ) as view:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), _REFRESH_S)
                view.update(await _snapshot(cluster, client), refresh=True)


async def _snapshot(cluster: LocalCluster, client: AsyncClient) -> RenderableType:
    processes = {n: _process_state(cluster, n) for n in cluster.node_ids}
    footer = Text("Ctrl-C stops the cluster", "dim")
    try:
        status = await client.status()
    except ClientError as exc:
        table = Table(title=f"Cluster {cluster.name}", title_justify="left")
        table.add_column("node")
        table.add_column("address")
        table.add_column("process")
        for node_id, address in cluster.addresses.items():
            table.add_row(node_id, address, processes[node_id])
        return Group(table, Text(f"status unavailable: {exc.message}", "yellow"), footer)
    rendered = render_status(status)
    nodes = nodes_table(status.cluster, status.controller, status.nodes, processes)
    parts = list(rendered.renderables) if isinstance(rendered, Group) else [rendered]
    return Group(nodes, *parts[1:], footer)


def _process_state(cluster: LocalCluster, node_id: str) -> str:
    code = cluster.exit_code(node_id)
    if code is None:
        return f"pid {cluster.pid(node_id)}" if cluster.running(node_id) else "not started"
    return f"exited ({code})"
