"""The client against a real cluster whose tablet leader fails mid-stream.

``kill``: SIGKILL (connections refused or reset). ``pause``: SIGSTOP, so requests in flight hang
until the client times out — the write may or may not have been replicated, which is exactly
where a non-idempotent retry would duplicate. With the idempotent producer, every acknowledged
record is stored exactly once, at the offset the producer reported, in the order it was sent per
key; consumers following the tablets across the leader change see each record exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from client.accumulator import Delivery
from client.async_client import AsyncClient
from client.models import Record
from testkit.cluster import Cluster
from testkit.waiting import wait_until
from tests.client.conftest import bootstrap_of, running_cluster

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

LOG = "failover"
TABLETS = 3
RECORDS = 3000


def all_tablets_led(cluster: Cluster) -> bool:
    tablets = cluster.describe(LOG)["tablets"]
    return len(tablets) == TABLETS and all(t["leader"] for t in tablets)


async def follow(client: AsyncClient, tablet: int, into: list[Record]) -> None:
    async for record in client.consume(LOG, tablet, "earliest", wait_ms=500):
        into.append(record)


@pytest.mark.parametrize("fault", ["kill", "pause"])
async def test_leader_failing_mid_stream_loses_and_duplicates_nothing(
    tmp_path: Path, fault: str
) -> None:
    with running_cluster(tmp_path) as cluster:
        async with AsyncClient(bootstrap_of(cluster), timeout_s=10) as client:
            await client.create_log(
                LOG, tablets=TABLETS, replication_factor=3, min_insync_replicas=2
            )
            await asyncio.to_thread(
                wait_until, lambda: all_tablets_led(cluster), 30, "every tablet has a leader"
            )
            victim = cluster.leader_of(LOG, 0)
            assert victim is not None

            seen: dict[int, list[Record]] = {t: [] for t in range(TABLETS)}
            followers = [asyncio.create_task(follow(client, t, seen[t])) for t in range(TABLETS)]
            producer = client.producer(
                LOG, linger_ms=2, delivery_timeout_s=120, request_timeout_s=3
            )
            futures: list[Delivery] = []
            for i in range(RECORDS):
                futures.append(await producer.send(f"r{i}", key=f"k{i % 30}"))
                if i == RECORDS // 3:  # mid-stream, with batches in flight
                    fail = cluster.kill if fault == "kill" else cluster.pause
                    await asyncio.to_thread(fail, victim)
                if i % 20 == 0:
                    await asyncio.sleep(0.02)  # spread the stream over the fail-over
            await producer.flush()
            await producer.close()
            if fault == "pause":
                cluster.resume(victim)  # it rejoins as a follower and must converge
            results = [f.result() for f in futures]  # every record acknowledged
            assert producer.stats.retries > 0, "the kill should have hit the stream"
            print(
                f"{fault} {victim}: {producer.stats.retries} "
                f"retries, {producer.stats.duplicates} duplicates answered, "
                f"{producer.stats.batches_sent} batches"
            )

            def consumed() -> int:
                return sum(len(records) for records in seen.values())

            await asyncio.to_thread(
                wait_until,
                lambda: consumed() >= RECORDS,
                60,
                f"followers to read {RECORDS} records",
            )
            await asyncio.sleep(1.0)  # time for a duplicate to show up, if there were one
            for task in followers:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    at: dict[tuple[int, int], bytes | None] = {}
    for tablet, records in seen.items():
        offsets = [r.offset for r in records]
        assert offsets == sorted(set(offsets)), f"tablet {tablet}: offsets repeat or go back"
        at.update({(tablet, r.offset): r.value for r in records})
    values = [value for value in at.values()]
    assert len(values) == RECORDS, f"{len(values) - RECORDS:+d} records vs. acknowledged"
    assert sorted(values) == sorted(f"r{i}".encode() for i in range(RECORDS))  # type: ignore[type-var]
    for i, (tablet, offset) in enumerate(results):
        assert at[(tablet, offset)] == f"r{i}".encode(), f"record {i} is not where acknowledged"
    for key in range(30):  # per key, the log keeps the order of sending
        placed = [results[i] for i in range(key, RECORDS, 30)]
        assert placed == sorted(placed)
