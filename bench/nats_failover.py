"""NATS JetStream failover: kill -9 of the stream leader's server -> first acknowledged publish.

The peer of ``bench.tabletlog_failover``, measured the same way: from just before the SIGKILL to
the acknowledgement of the first publish *sent after it*. Each trial starts a fresh 3-server
cluster (``bench.nats_cluster``, killed in a ``finally``) and connects its publisher to a
follower, so the time is the servers' failover, not the client's; afterwards the stream is read
back from the survivors to count lost and duplicated acknowledged messages (publishes carry
``Nats-Msg-Id``, so retries cannot duplicate). The publisher task and the kill share one event
loop.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import nats
from nats.js.api import AckPolicy, ConsumerConfig

from bench.nats_cluster import NatsCluster
from bench.nats_stream import STREAM, SUBJECT, connect, create_stream, stream_leader
from bench.report import FAILOVER, Result, median


async def _read_back_ids(servers: list[str], timeout: float = 30.0) -> list[str]:
    """Every Nats-Msg-Id in the stream, read from the surviving servers."""
    nc = await connect(servers)
    ids: list[str] = []
    try:
        js = nc.jetstream(timeout=5)
        deadline = time.monotonic() + timeout
        while True:  # the consumer's own R3 group may need an election right after the kill
            try:
                psub = await js.pull_subscribe(
                    SUBJECT, stream=STREAM, config=ConsumerConfig(ack_policy=AckPolicy.NONE)
                )
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
        while time.monotonic() < deadline:
            try:
                msgs = await psub.fetch(1000, timeout=1.0)
            except nats.errors.TimeoutError:
                break
            ids.extend((m.headers or {}).get("Nats-Msg-Id", "") for m in msgs)
        return ids
    finally:
        await asyncio.wait_for(nc.close(), timeout=10)


async def _trial(pre_kill_s: float, post_s: float) -> dict[str, Any]:
    """One fresh cluster: publish with in-flight 1, kill -9 the stream leader's server, time the
    first ack of a publish sent after the kill. The client is connected to a follower, so this is
    the server-side failover; publishes carry Nats-Msg-Id so retries cannot duplicate."""
    with NatsCluster(3) as cluster:
        admin = await connect(cluster.urls)
        try:
            await create_stream(admin.jetstream(timeout=5))
            leader = await stream_leader(admin.jetstream(timeout=5))
        finally:
            await asyncio.wait_for(admin.close(), timeout=10)
        followers = [cluster.url(n) for n in cluster.names if n != leader]
        nc = await connect([*followers, cluster.url(leader)], dont_randomize=True)
        js = nc.jetstream(timeout=0.25)
        payload = os.urandom(100)
        acked: list[str] = []
        state: dict[str, float] = {"kill": float("inf"), "first": float("inf")}
        stop = asyncio.Event()
        first = asyncio.Event()

        async def publisher() -> None:
            seq = 0
            while not stop.is_set():
                seq += 1
                msg_id = str(seq)
                while not stop.is_set():
                    t0 = time.perf_counter()
                    try:
                        await js.publish(
                            SUBJECT, payload, timeout=0.25, headers={"Nats-Msg-Id": msg_id}
                        )
                    except Exception:
                        await asyncio.sleep(0.01)
                        continue
                    acked.append(msg_id)
                    if t0 >= state["kill"] and not first.is_set():
                        state["first"] = time.perf_counter()
                        first.set()
                    break

        task = asyncio.create_task(publisher())
        try:
            await asyncio.sleep(pre_kill_s)
            state["kill"] = time.perf_counter()
            cluster.kill(leader)
            try:
                await asyncio.wait_for(first.wait(), timeout=30)
            except TimeoutError:
                pass
            await asyncio.sleep(post_s)
        finally:
            stop.set()
            await asyncio.wait_for(task, timeout=5)
            await asyncio.wait_for(nc.close(), timeout=10)
        read = await _read_back_ids(followers)
        read_set = set(read)
        return {
            "unavail_s": state["first"] - state["kill"],
            "acked": len(acked),
            "lost": len(set(acked) - read_set),
            "dups": len(read) - len(read_set),
        }


async def run_failover(count: int, pre_kill_s: float, post_s: float) -> Result:
    """The failover row: ``count`` trials, each on a fresh cluster; median and max."""
    trials = [await _trial(pre_kill_s, post_s) for _ in range(count)]
    times = [t["unavail_s"] for t in trials]
    ok = [t for t in times if t != float("inf")]
    acked = sum(t["acked"] for t in trials)
    lost = sum(t["lost"] for t in trials)
    dups = sum(t["dups"] for t in trials)
    notes = (
        f"{len(trials)} trials: {' / '.join(f'{t:.2f}' for t in times)} s; "
        f"p99 column = max; client on a follower; {acked} acked, {lost} lost, "
        f"{dups} duplicates"
    )
    return Result(
        "kill -9 stream leader -> first ack",
        "NATS JS R3",
        FAILOVER,
        p50_ms=median(ok) * 1e3 if ok else None,
        p99_ms=max(times) * 1e3,
        notes=notes,
        extra={"trials": trials},
    )
