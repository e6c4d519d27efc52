"""Between faults: wait until the cluster is whole again, and say why when it is not.

:func:`wait_stable` waits until every node is up and ready, every tablet is led with its full
replica set in sync, and (when a workload runs) an acknowledged write landed on every tablet
since the heal — so each fault hits a healthy cluster and the recovery is part of what is
measured. When the cluster does not heal in time, the error carries :func:`diagnose` (every
node's view of the log, every leader's view of its followers, every replica's offsets) and
:func:`dump_fetcher_tasks` (the replica fetch loops' asyncio stacks).
"""

from __future__ import annotations

import os
import signal
import time

from replication.auth import INTERNAL_TOKEN_HEADER, internal_token
from testkit.cluster import SECRET, Cluster
from testkit.http import HttpError, http
from testkit.waiting import wait_until
from tests.faults.final_state import replica_states
from tests.faults.nemesis_context import (
    NemesisContext,
    NemesisError,
    NoAnswer,
    NodeCrashed,
    describe_state,
    tablets_view,
)
from tests.faults.node_debug import MARKER


def check_no_crash(cluster: Cluster) -> None:
    crashed = cluster.crashed_nodes()
    if crashed:
        procs = {n: cluster.nodes[n].proc for n in crashed}
        codes = {n: proc.returncode if proc else None for n, proc in procs.items()}
        raise NodeCrashed(f"node process(es) exited on their own: {codes}")


def is_stable(ctx: NemesisContext, since: float | None) -> bool:
    cluster = ctx.cluster
    check_no_crash(cluster)
    if any(not n.running or n.paused for n in cluster.nodes.values()):
        return False
    if not all(cluster.is_ready(n) for n in cluster.nodes):
        return False
    tablets = tablets_view(ctx)
    if len(tablets) != ctx.tablets:
        return False
    for t in tablets:
        if not t["leader"] or set(t["isr"]) != set(t["replicas"]):
            return False
    if since is not None and ctx.workload is not None:
        return all(count > 0 for count in ctx.workload.acked_since(since).values())
    return True


def wait_stable(
    ctx: NemesisContext, since: float | None = None, timeout_s: float | None = None
) -> float:
    """Wait until the cluster is whole again (see the module docstring); returns the seconds
    waited. ``since``: also wait for an acknowledged write on every tablet started after it."""
    started = time.monotonic()
    timeout = timeout_s or ctx.stable_timeout_s
    deadline = started + timeout
    while True:
        try:
            if is_stable(ctx, since):
                return time.monotonic() - started
        except NodeCrashed:
            raise
        except (HttpError, OSError, AssertionError, NoAnswer, StopIteration):
            pass
        if time.monotonic() > deadline:
            state = describe_state(ctx)
            raise NemesisError(
                f"the cluster is not whole {timeout:.0f} s after the fault "
                f"was healed: {state}\n{diagnose(ctx)}\n"
                f"{dump_fetcher_tasks(ctx.cluster)}"
            )
        time.sleep(0.1)


def diagnose(ctx: NemesisContext) -> str:
    """Every node's own view of the log's tablets, and what each leader knows of its followers
    (``/internal/tablets``): what a stuck replication looks like from every side."""
    lines = [
        "diagnosis (each node's view: tablet leader@epoch isr; tablets it leads: "
        "end/hw and followers' fetch offsets):"
    ]
    headers = {INTERNAL_TOKEN_HEADER: internal_token(SECRET)}
    for node_id, node in ctx.cluster.nodes.items():
        if not node.running:
            lines.append(f"  {node_id}: not running")
            continue
        try:
            view = ctx.cluster.describe(ctx.log, node_id)["tablets"]
            seen = " ".join(
                f"{t['tablet']}:{t['leader']}@{t['leader_epoch']}{t['isr']}" for t in view
            )
            led = http(
                "GET", f"{node.url}/internal/tablets?log={ctx.log}", timeout_s=5, headers=headers
            )["tablets"]
            leading = " ".join(
                f"{t['tablet']}@{t['leader_epoch']} end {t['end_offset']} hw "
                f"{t['high_watermark']} followers {t['followers']}"
                for t in led
            )
            lines.append(f"  {node_id}: sees {seen}; leads {leading or 'nothing'}")
        except (HttpError, OSError, KeyError) as exc:
            lines.append(f"  {node_id}: {exc!r}")
    urls = {n: node.url for n, node in ctx.cluster.nodes.items()}
    for tablet in range(ctx.tablets):
        states = replica_states(urls, ctx.log, tablet, sorted(urls))
        lines.append(
            f"  tablet {tablet} replicas: "
            + ", ".join(
                f"{s.node} {s.error}"
                if s.error
                else f"{s.node} end {s.end_offset} hw {s.high_watermark}"
                for s in states
            )
        )
    return "\n".join(lines)


def dump_fetcher_tasks(cluster: Cluster, timeout_s: float = 5.0) -> str:
    """Ask every node run through ``tests.faults.node_debug`` to log its asyncio tasks (SIGUSR1);
    return the replica fetch loops' stacks (the whole dumps are in the node logs)."""
    if "tests.faults.node_debug" not in cluster.node_command:
        return ""
    before: dict[str, int] = {}
    for node_id, node in cluster.nodes.items():
        if node.running and not node.paused and node.proc is not None:
            before[node_id] = node.log_path.read_text(errors="replace").count(MARKER)
            os.kill(node.proc.pid, signal.SIGUSR1)

    def dumped() -> bool:
        return all(
            cluster.nodes[n].log_path.read_text(errors="replace").count(MARKER) > count
            for n, count in before.items()
        )

    try:
        wait_until(dumped, timeout_s, "nodes log their asyncio tasks")
    except AssertionError as exc:
        return f"task dumps: {exc}"
    out = ["replica fetch loops (asyncio task stacks; full dumps in the node logs):"]
    for node_id in before:
        text = cluster.nodes[node_id].log_path.read_text(errors="replace")
        dump = text[text.rindex(MARKER) :].split("==== end of tasks ====")[0]
        for section in dump.split("\n--- ")[1:]:
            if section.startswith("fetch-from"):
                out.append(f"  {node_id}: --- " + section.rstrip().replace("\n", "\n    "))
    return "\n".join(out)
