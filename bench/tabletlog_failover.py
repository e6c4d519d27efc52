"""Failover of the tabletlog benchmark: kill -9 of a tablet leader -> first acknowledged write.

One writer (in the orchestrator's event loop; it has one request in flight, so it needs little
CPU) produces single-record idempotent batches to one tablet. Normally it talks to the leader
directly (binary endpoint, ``X-Tabletlog-No-Forward: 1``, 421 answers carry the new leader).
When the leader stops answering it switches to "any node" mode: the next node in turn gets the
request *without* the no-forward header and a 1 s ``timeout_ms``, so that node holds it until
it knows a leader and forwards it (nodes retry routing while leadership moves). Every batch
carries a producer id and sequence, so resending one whose outcome was unknown cannot append it
twice. The time measured is from just before the SIGKILL to the acknowledgement of the first
request *sent after it*, as in the NATS failover row.

Between trials the killed node is restarted and the benchmark waits until every tablet's ISR is
full again. After each trial the tablet is read back: every acknowledged value must be there,
and none twice.

``run_failover`` runs the trials on the benchmark's cluster (``bench.tabletlog_harness``; every
other trial kills the controller's node) and sums them up in the failover row.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench.report import FAILOVER, Result, median
from bench.tabletlog_harness import Bench
from bench.tabletlog_support import SYSTEM
from testkit.cluster import Cluster
from testkit.waiting import wait_until
from wire.batch import build_batch

CONTENT_TYPE = "application/vnd.tabletlog.batches"
NO_FORWARD = "X-Tabletlog-No-Forward"


@dataclass
class Writer:
    """Acks=all writer with one request in flight that follows the leader (see module doc)."""

    addresses: dict[str, str]  # node id -> host:port
    log: str
    tablet: int
    tag: str
    direct: str | None = None  # address of the leader we believe in; None: any-node mode
    acked: list[tuple[float, float, str]] = field(default_factory=list)  # (sent, acked, value)
    errors: dict[str, int] = field(default_factory=dict)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    first_after: float = float("inf")  # only acks of requests sent at or after this count
    first_ack: asyncio.Event = field(default_factory=asyncio.Event)
    first_ack_at: float = float("inf")
    _rr: int = 0
    _token: str = ""  # of the current producer id (POST /v1/producers)

    def _count(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1

    async def _init_producer(self, session: aiohttp.ClientSession) -> tuple[int, int]:
        """A producer id and epoch from ``POST /v1/producers`` of any node that answers; the
        token is kept for the requests' header."""
        while True:
            self._rr += 1
            nodes = list(self.addresses.values())
            url = f"http://{nodes[self._rr % len(nodes)]}/v1/producers"
            try:
                async with session.post(
                    url, json={}, timeout=aiohttp.ClientTimeout(total=2)
                ) as resp:
                    if resp.status == 200:
                        body = await resp.json()
                        self._token = str(body["producer_token"])
                        return int(body["producer_id"]), int(body["producer_epoch"])
            except (aiohttp.ClientError, TimeoutError, ValueError, KeyError):
                pass
            await asyncio.sleep(0.01)

    async def run(self) -> None:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            (producer_id, epoch), seq, i = await self._init_producer(session), 0, 0
            while not self.stop.is_set():
                value = f"{self.tag}-{i}"
                batch = build_batch(
                    [(None, value.encode())],
                    producer_id=producer_id,
                    producer_epoch=epoch,
                    base_sequence=seq,
                )
                sent = time.perf_counter()
                outcome = await self._attempt(session, batch)
                if outcome == "ok":
                    now = time.perf_counter()
                    self.acked.append((sent, now, value))
                    if sent >= self.first_after and not self.first_ack.is_set():
                        self.first_ack_at = now
                        self.first_ack.set()
                    i += 1
                    seq += 1
                elif outcome == "new_session":
                    (producer_id, epoch), seq = await self._init_producer(session), 0
                elif outcome == "backoff":
                    await asyncio.sleep(0.01)

    async def _attempt(self, session: aiohttp.ClientSession, batch: bytes) -> str:
        """One request; 'ok', 'retry' (at once), 'backoff' (after 10 ms) or 'new_session'."""
        direct = self.direct
        nodes = list(self.addresses.values())
        address = direct if direct is not None else nodes[self._rr % len(nodes)]
        headers = {"Content-Type": CONTENT_TYPE, "X-Tabletlog-Producer-Token": self._token}
        timeout_ms = 500
        if direct is not None:
            headers[NO_FORWARD] = "1"
        else:
            timeout_ms = 1000
        url = (
            f"http://{address}/v1/logs/{self.log}/tablets/{self.tablet}/batches"
            f"?acks=all&timeout_ms={timeout_ms}"
        )
        try:
            async with session.post(
                url,
                data=batch,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout_ms / 1000 + 0.3),
            ) as resp:
                status, body = resp.status, await resp.read()
        except aiohttp.ClientConnectorError:
            self._count("refused")
            self._next_node()
            return "retry"  # nothing was sent: try the next node at once
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._count(type(exc).__name__)
            self._next_node()
            return "backoff"
        if status == 200:
            if direct is None:
                await self._find_leader(session, address)
            return "ok"
        try:
            reply: dict[str, Any] = json.loads(body)
        except ValueError:
            reply = {}
        code = str(reply.get("error", status))
        self._count(code)
        if status == 421 and reply.get("leader_address"):
            self.direct = str(reply["leader_address"])
            return "retry"
        if code in ("out_of_order_sequence", "invalid_producer_epoch", "unknown_producer"):
            return "new_session"
        self._next_node()
        return "backoff"

    def _next_node(self) -> None:
        self.direct = None
        self._rr += 1

    async def _find_leader(self, session: aiohttp.ClientSession, address: str) -> None:
        """After an ack in any-node mode: ask that node who leads, to go direct again."""
        try:
            async with session.get(
                f"http://{address}/v1/logs/{self.log}", timeout=aiohttp.ClientTimeout(total=1)
            ) as resp:
                info = await resp.json()
            leader = info["tablets"][self.tablet]["leader"]
            self.direct = self.addresses.get(leader) if leader else None
        except (aiohttp.ClientError, TimeoutError, KeyError, ValueError, TypeError):
            self.direct = None


def _address(cluster: Cluster, node_id: str) -> str:
    return cluster.nodes[node_id].url.removeprefix("http://")


def pick_tablet(cluster: Cluster, log: str, controller_leader: bool) -> int:
    """A tablet whose leader is (or is not) the controller node; any tablet if there is none."""
    controller = cluster.controller()
    leaders = cluster.leaders(log)
    for tablet, leader in sorted(leaders.items()):
        if leader is not None and (leader == controller) == controller_leader:
            return tablet
    return min(leaders)


async def trial(
    cluster: Cluster,
    log: str,
    tag: str,
    *,
    controller_leader: bool,
    pre_kill_s: float,
    post_s: float,
) -> dict[str, Any]:
    """One kill -9 of a tablet's leader (the controller's node or another one, as asked); the
    killed node is running again and back in every ISR when this returns."""
    addresses = {n: _address(cluster, n) for n in cluster.nodes}
    tablet = pick_tablet(cluster, log, controller_leader)
    leader = cluster.leader_of(log, tablet)
    assert leader is not None
    writer = Writer(addresses, log, tablet, tag, direct=addresses[leader])
    task = asyncio.create_task(writer.run())
    result: dict[str, Any] = {}
    try:
        await asyncio.sleep(pre_kill_s)
        deadline = time.perf_counter() + 10
        while not writer.acked and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
        if not writer.acked:
            raise RuntimeError(f"no write acknowledged before the kill: {writer.errors}")
        victim = cluster.leader_of(log, tablet)  # leadership may have moved (rebalancing)
        assert victim is not None
        was_controller = cluster.controller() == victim
        before = len(writer.acked)
        kill_at = time.perf_counter()
        writer.first_after = kill_at
        cluster.kill(victim)
        try:
            await asyncio.wait_for(writer.first_ack.wait(), timeout=30)
        except TimeoutError:
            pass
        await asyncio.sleep(post_s)
        result = {
            "tablet": tablet,
            "victim": victim,
            "was_controller": was_controller,
            "unavail_s": writer.first_ack_at - kill_at,
            "acked_before": before,
        }
    finally:
        writer.stop.set()
        await asyncio.wait_for(task, timeout=10)
    result["new_leader"] = cluster.leader_of(log, tablet)
    result["acked"] = len(writer.acked)
    result["errors"] = writer.errors
    cluster.start(result["victim"])
    t0 = time.perf_counter()
    await asyncio.to_thread(
        wait_until,
        lambda: cluster.is_ready(result["victim"]) and cluster.in_sync(log),
        60,
        "the killed node back in every ISR",
        0.1,
    )
    result["rejoin_s"] = time.perf_counter() - t0
    values = [
        r["value"]
        for r in cluster.read_all(log, tablet)
        if str(r.get("value", "")).startswith(f"{tag}-")
    ]
    stored = set(values)
    result["lost"] = sum(1 for _, _, v in writer.acked if v not in stored)
    result["duplicates"] = len(values) - len(stored)
    return result


def run_failover(bench: Bench) -> Result:
    """The failover row: median (p50 column) and max (p99 column) of the plan's trials."""
    p = bench.plan
    trials: list[dict[str, Any]] = []
    name = "failover"
    bench.cluster.create_log(name, tablets=3)
    deadline = time.monotonic() + 30
    while not bench.in_sync(name) and time.monotonic() < deadline:
        time.sleep(0.05)
    for k in range(p.failover_trials):
        # every other trial kills the controller's node (a tablet leader there, if any):
        # tablet failover plus controller failover is the worst case
        trials.append(
            asyncio.run(
                trial(
                    bench.cluster,
                    name,
                    f"t{k}",
                    controller_leader=k % 2 == 1,
                    pre_kill_s=p.failover_pre_kill_s,
                    post_s=p.failover_post_s,
                )
            )
        )
    times = [t["unavail_s"] for t in trials]
    ok = [t for t in times if t != float("inf")]
    lost = sum(t["lost"] for t in trials)
    dups = sum(t["duplicates"] for t in trials)
    ctl = [t["unavail_s"] for t in trials if t["was_controller"]]
    other = [t["unavail_s"] for t in trials if not t["was_controller"]]
    split = (
        f"victim also the controller: median {median(ctl):.2f} s ({len(ctl)}), "
        f"not: {median(other):.2f} s ({len(other)})"
    )
    notes = (
        f"{len(trials)} trials: {' / '.join(f'{t:.2f}' for t in times)} s; p99 column "
        f"= max; {split}; writer 1 in flight, re-routes through any node; "
        f"{sum(t['acked'] for t in trials)} acked, {lost} lost, {dups} duplicates; "
        f"rejoin {median(t['rejoin_s'] for t in trials):.1f} s median"
    )
    return Result(
        "kill -9 tablet leader -> first ack",
        SYSTEM,
        FAILOVER,
        p50_ms=median(ok) * 1e3 if ok else None,
        p99_ms=max(times) * 1e3,
        notes=notes,
        extra={"trials": trials},
    )
