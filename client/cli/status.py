"""``tabletlog status`` and ``tabletlog cluster``: who is alive, who leads what, how far behind.

The rendering functions are shared with ``tabletlog dev up``'s live view. Pure apart from the
commands' own I/O; run on the CLI's main thread.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from client.cli.common import (
    EXIT_OK,
    add_client_options,
    add_json_option,
    join_ids,
    make_client,
    print_json,
    stdout_console,
)
from client.models import ClusterInfo, LogDescription, NodeInfo, Status, TabletInfo


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    status = commands.add_parser(
        "status",
        help="tablets: leader, epoch, ISR, high watermark, lag per replica",
        description="Show the nodes and every log's tablets from the leaders' point of view.",
    )
    add_client_options(status, top_level=False)
    add_json_option(status)
    status.set_defaults(handler=run_status)

    cluster = commands.add_parser(
        "cluster",
        help="the nodes and the metadata controller",
        description="Show the cluster's nodes, whether each is alive, and the controller.",
    )
    add_client_options(cluster, top_level=False)
    add_json_option(cluster)
    cluster.set_defaults(handler=run_cluster)


async def run_status(args: argparse.Namespace) -> int:
    async with make_client(args) as client:
        status = await client.status()
    if args.json:
        print_json(status.to_dict())
    else:
        stdout_console().print(render_status(status))
    return EXIT_OK


async def run_cluster(args: argparse.Namespace) -> int:
    async with make_client(args) as client:
        info = await client.cluster()
    if args.json:
        print_json(info.to_dict())
    else:
        stdout_console().print(nodes_table(info.cluster, info.controller, info.nodes))
    return EXIT_OK


def render_status(status: Status) -> RenderableType:
    """Nodes table, then one table of every log's tablets."""
    parts: list[RenderableType] = [nodes_table(status.cluster, status.controller, status.nodes)]
    if status.logs:
        tablets = tablets_table("Tablets")
        for log in status.logs:
            for tablet in log.tablets:
                add_tablet_row(tablets, tablet, log.name)
        parts.append(tablets)
    else:
        parts.append(Text("no logs yet — create one with: tabletlog log create NAME", "dim"))
    return Group(*parts)


def nodes_table(
    cluster: str,
    controller: str | None,
    nodes: tuple[NodeInfo, ...],
    processes: Mapping[str, str] | None = None,
) -> Table:
    """One row per node; ``processes`` adds a column (``dev up`` shows its child processes)."""
    title = f"Cluster {cluster}" if cluster else "Cluster"
    table = Table(title=title, title_justify="left")
    table.add_column("node")
    table.add_column("address")
    table.add_column("alive")
    table.add_column("role")
    if processes is not None:
        table.add_column("process")
    for node in nodes:
        alive = Text("yes", "green") if node.alive else Text("no", "bold red")
        role = "controller" if node.id == controller else ""
        row: list[RenderableType] = [node.id, node.address, alive, role]
        if processes is not None:
            row.append(processes.get(node.id, "-"))
        table.add_row(*row)
    if controller is None:
        table.caption = "no metadata controller elected"
    return table


def tablets_table(title: str, *, with_log: bool = True) -> Table:
    table = Table(title=title, title_justify="left")
    if with_log:
        table.add_column("log")
    for name in ("tablet", "leader", "epoch", "replicas", "ISR", "start", "HW", "end", "lag"):
        justify = "right" if name in ("tablet", "epoch", "start", "HW", "end") else "left"
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    return table


def add_tablet_row(table: Table, tablet: TabletInfo, log: str | None = None) -> None:
    leader = Text(tablet.leader) if tablet.leader else Text("none", "bold red")
    isr = Text(join_ids(tablet.isr))
    if len(tablet.isr) < len(tablet.replicas):
        isr.stylize("yellow")
    end = "-" if tablet.end_offset is None else str(tablet.end_offset)
    lag = " ".join(
        f"{node}:{'?' if behind is None else behind}"
        for node, behind in sorted(tablet.replica_lag.items())
    )
    row: list[RenderableType] = [
        str(tablet.tablet),
        leader,
        str(tablet.leader_epoch),
        join_ids(tablet.replicas),
        isr,
        str(tablet.start_offset),
        str(tablet.high_watermark),
        end,
        lag or "-",
    ]
    if log is not None:
        row.insert(0, log)
    table.add_row(*row)


def describe_renderable(description: LogDescription) -> RenderableType:
    """A log's settings and its tablets (``tabletlog log describe``)."""
    settings = Table(title=f"Log {description.name}", title_justify="left", show_header=False)
    settings.add_column("setting")
    settings.add_column("value")
    for key, value in sorted(description.config.items()):
        settings.add_row(key, value if isinstance(value, str) else json.dumps(value))
    tablets = tablets_table("Tablets", with_log=False)
    for tablet in description.tablets:
        add_tablet_row(tablets, tablet)
    return Group(settings, tablets)


def cluster_renderable(info: ClusterInfo) -> RenderableType:
    return nodes_table(info.cluster, info.controller, info.nodes)
