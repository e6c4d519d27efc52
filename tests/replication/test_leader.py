"""TabletLeader: the high watermark, produce acknowledgements and ISR decisions, on a real log."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from replication.errors import NotEnoughReplicas, ReplicationTimeout
from replication.leader import TabletLeader
from replication.model import TabletId, TabletInfo
from storage.config import LogConfig
from storage.group_commit import GroupCommitter
from storage.log import TabletLog
from wire.batch import build_batch


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def info(isr: tuple[str, ...] = ("a", "b", "c"), epoch: int = 3, version: int = 0) -> TabletInfo:
    return TabletInfo("log", 0, ("a", "b", "c"), "a", epoch, 1, isr, version)


@pytest.fixture
def log(tmp_path: Path) -> Iterator[TabletLog]:
    opened = TabletLog.open(tmp_path / "t", LogConfig(fsync="always"))
    yield opened
    opened.close()


def make_leader(
    log: TabletLog, clock: Clock, isr: tuple[str, ...] = ("a", "b", "c"), min_isr: int = 2
) -> TabletLeader:
    return TabletLeader(
        TabletId("log", 0), "a", log, GroupCommitter(log), info(isr), min_isr, clock
    )


def batch(n: int = 1) -> bytes:
    return build_batch([(None, b"v%d" % i) for i in range(n)])


async def test_high_watermark_is_min_over_the_isr(log: TabletLog) -> None:
    clock = Clock()
    leader = make_leader(log, clock)
    result = leader.append(batch(5))
    await leader.committer.wait_durable(result.end_offset)
    assert log.high_watermark == 0, "followers have not fetched at this epoch yet"
    leader.on_fetch("b", 5, 5, 0)
    assert log.high_watermark == 0, "c has not fetched"
    leader.on_fetch("c", 3, 3, 0)
    assert log.high_watermark == 3
    leader.on_fetch("c", 5, 5, 3)
    assert log.high_watermark == 5


async def test_acks_all_waits_for_every_isr_member(log: TabletLog) -> None:
    leader = make_leader(log, Clock())
    result = leader.append(batch(2))
    waiting = asyncio.create_task(leader.wait_acked(result, "all", timeout_s=5))
    await asyncio.sleep(0.05)
    leader.on_fetch("b", 2, 2, 0)
    await asyncio.sleep(0.01)
    assert not waiting.done()
    leader.on_fetch("c", 2, 2, 0)
    await asyncio.wait_for(waiting, 1)
    assert log.high_watermark == 2


async def test_acks_all_times_out_with_unknown_outcome(log: TabletLog) -> None:
    leader = make_leader(log, Clock())
    result = leader.append(batch())
    with pytest.raises(ReplicationTimeout, match="may or may not"):
        await leader.wait_acked(result, "all", timeout_s=0.1)


async def test_acks_1_needs_only_the_leader(log: TabletLog) -> None:
    leader = make_leader(log, Clock())
    result = leader.append(batch())
    await asyncio.wait_for(leader.wait_acked(result, "1", timeout_s=5), 1)
    assert log.flushed_offset >= result.end_offset


def test_too_few_in_sync_replicas_fail_fast(log: TabletLog) -> None:
    leader = make_leader(log, Clock(), isr=("a",), min_isr=2)
    with pytest.raises(NotEnoughReplicas):
        leader.check_can_append("all")
    leader.check_can_append("1")


async def test_losing_leadership_fails_waiting_writes_as_unknown(log: TabletLog) -> None:
    leader = make_leader(log, Clock())
    result = leader.append(batch())
    waiting = asyncio.create_task(leader.wait_acked(result, "all", timeout_s=5))
    await asyncio.sleep(0.05)
    leader.close()
    with pytest.raises(ReplicationTimeout, match="leadership"):
        await waiting


async def test_pending_isr_addition_holds_the_high_watermark_back(log: TabletLog) -> None:
    leader = make_leader(log, Clock(), isr=("a", "b"))
    result = leader.append(batch(4))
    await leader.committer.wait_durable(result.end_offset)
    leader.pending_isr_additions.add("c")
    leader.on_fetch("b", 4, 4, 0)
    assert log.high_watermark == 0, "c counts as soon as its addition is requested"
    leader.on_fetch("c", 4, 4, 0)
    assert log.high_watermark == 4


async def test_removal_counts_only_once_confirmed(log: TabletLog) -> None:
    leader = make_leader(log, Clock())
    result = leader.append(batch(2))
    await leader.committer.wait_durable(result.end_offset)
    leader.on_fetch("b", 2, 2, 0)
    assert log.high_watermark == 0
    leader.update_info(info(isr=("a", "b"), version=1))
    assert log.high_watermark == 2


async def test_lagging_and_caught_up_followers(log: TabletLog) -> None:
    clock = Clock()
    leader = make_leader(log, clock, isr=("a", "b"))
    result = leader.append(batch(3))
    await leader.committer.wait_durable(result.end_offset)
    leader.on_fetch("b", 3, 3, 0)
    assert log.high_watermark == 3
    leader.on_fetch("c", 1, 1, 0)
    clock.now += 10
    assert leader.lagging_followers(5.0) == ["b"], "b has not fetched for 10 s"
    leader.on_fetch("b", 3, 3, 0)
    assert leader.lagging_followers(5.0) == []
    assert leader.caught_up_followers() == [], "c is behind the high watermark"
    leader.on_fetch("c", 3, 3, 0)
    assert leader.caught_up_followers() == ["c"]


async def test_a_follower_that_lost_committed_records_is_out_at_once(log: TabletLog) -> None:
    clock = Clock()
    leader = make_leader(log, clock)
    result = leader.append(batch(5))
    await leader.committer.wait_durable(result.end_offset)
    leader.on_fetch("b", 5, 5, 0)
    leader.on_fetch("c", 5, 5, 0)
    assert log.high_watermark == 5
    leader.on_fetch("c", 2, 2, 5)  # c truncated corrupt data: it no longer has offsets 2..4
    assert leader.lagging_followers(1000.0) == ["c"]


async def test_acks_1_writes_become_readable_without_a_waiting_producer(log: TabletLog) -> None:
    leader = make_leader(log, Clock())
    leader.on_fetch("b", 0, 0, 0)
    leader.on_fetch("c", 0, 0, 0)
    result = leader.append(batch(3))
    leader.on_fetch("b", 3, 3, 0)  # the followers acknowledge before the leader's fsync ends
    leader.on_fetch("c", 3, 3, 0)
    assert log.high_watermark == 0
    await leader.committer.wait_durable(result.end_offset)
    await asyncio.sleep(0)
    assert log.high_watermark == 3, "the leader's own fsync moved the high watermark"


async def test_a_leader_alone_in_its_isr_exposes_its_durable_end_at_once(tmp_path: Path) -> None:
    """After a restart the log opens with its last checkpointed high watermark; a leader whose
    ISR is itself must not wait for a write to expose the rest (issue 13, item 8)."""
    directory = tmp_path / "t"
    first = TabletLog.open(directory, LogConfig(fsync="always"))
    first.append_as_leader(batch(7), 1)
    first.flush()
    first.close()  # high watermark never raised: the checkpoint says 0
    reopened = TabletLog.open(directory, LogConfig(fsync="always"))
    try:
        assert reopened.high_watermark == 0 and reopened.end_offset == 7
        leader = make_leader(reopened, Clock(), isr=("a",), min_isr=1)
        assert reopened.high_watermark == 7
        assert leader.hw_restored
    finally:
        reopened.close()


async def test_high_watermark_is_restored_once_every_isr_member_reported(log: TabletLog) -> None:
    leader = make_leader(log, Clock())
    assert not leader.hw_restored
    waiting = asyncio.create_task(leader.wait_restored(5))
    leader.on_fetch("b", 0, 0, 0)
    await asyncio.sleep(0.01)
    assert not waiting.done() and not leader.hw_restored
    leader.on_fetch("c", 0, 0, 0)
    assert await asyncio.wait_for(waiting, 1) is True
    assert leader.hw_restored


async def test_an_isr_shrink_restores_the_high_watermark(log: TabletLog) -> None:
    leader = make_leader(log, Clock())
    leader.on_fetch("b", 0, 0, 0)
    waiting = asyncio.create_task(leader.wait_restored(5))
    await asyncio.sleep(0.01)
    leader.update_info(info(("a", "b"), version=1))  # the silent c left the ISR
    assert await asyncio.wait_for(waiting, 1) is True


async def test_waiting_for_restoration_times_out_or_ends_with_leadership(log: TabletLog) -> None:
    leader = make_leader(log, Clock())
    assert await leader.wait_restored(0.05) is False
    waiting = asyncio.create_task(leader.wait_restored(5))
    await asyncio.sleep(0.01)
    leader.close()
    assert await asyncio.wait_for(waiting, 1) is False
