"""LeaderFetcher against a fake leader built on a real log: truncation by epoch, then copying."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from replication.follower import FollowedTablet, LeaderFetcher
from replication.model import TabletId
from replication.protocol import Ack, FetchRequest, TabletFetchResult
from storage.config import LogConfig
from storage.group_commit import GroupCommitter
from storage.log import TabletLog
from testkit.waiting import wait_until
from wire.batch import build_batch, iter_records

TABLET = TabletId("log", 0)


class FakeStream:
    """The leader's end of a replication stream over one real log."""

    def __init__(self, leader: FakeLeader) -> None:
        self.leader = leader
        self.request: FetchRequest | None = None
        self.closed = False

    async def send_fetch(self, request: FetchRequest) -> None:
        self.request = request

    async def send_acks(self, replica: str, acks: list[Ack]) -> None:
        self.leader.acks.extend(acks)

    async def receive_data(self, timeout_s: float) -> list[TabletFetchResult]:
        del timeout_s
        request, self.request = self.request, None
        assert request is not None, "data asked for without a fetch"
        for p in request.positions:
            self.leader.durable_seen.append(p.durable_offset)
        return await self.leader.answer(request)

    async def close(self) -> None:
        self.closed = True


class FakeLeader:
    """The leader side of the replication protocol over one real log (stands in for
    PeerClient)."""

    def __init__(self, log: TabletLog, epoch: int) -> None:
        self.log = log
        self.epoch = epoch
        self.epoch_queries: list[int] = []
        self.acks: list[Ack] = []
        self.durable_seen: list[int] = []

    async def open_stream(self, address: str, timeout_s: float) -> FakeStream:
        del address, timeout_s
        return FakeStream(self)

    async def answer(self, request: FetchRequest) -> list[TabletFetchResult]:
        results = []
        for p in request.positions:
            data = (
                self.log.read_bytes(p.fetch_offset, 1 << 20, self.log.end_offset)
                if p.fetch_offset < self.log.end_offset
                else b""
            )
            results.append(
                TabletFetchResult(
                    p.log,
                    p.tablet,
                    None,
                    self.epoch,
                    self.log.high_watermark,
                    self.log.start_offset,
                    self.log.end_offset,
                    data,
                )
            )
        await asyncio.sleep(0.01)
        return results

    async def epoch_end(
        self,
        address: str,
        log: str,
        tablet: int,
        leader_epoch: int,
        requested_epoch: int,
        timeout_s: float,
    ) -> tuple[int, int]:
        del address, log, tablet, leader_epoch, timeout_s
        self.epoch_queries.append(requested_epoch)
        return self.log.end_offset_for_epoch(requested_epoch)


def write(log: TabletLog, epoch: int, values: list[str]) -> None:
    log.append_as_leader(build_batch([(None, v.encode()) for v in values]), epoch)


def values(log: TabletLog) -> list[str]:
    data = log.read_bytes(log.start_offset, 1 << 24, log.end_offset)
    return [r.value.decode() for r in iter_records(data) if r.value is not None]


@pytest.fixture
def logs(tmp_path: Path) -> Iterator[tuple[TabletLog, TabletLog]]:
    leader = TabletLog.open(tmp_path / "leader", LogConfig(fsync="never"))
    follower = TabletLog.open(tmp_path / "follower", LogConfig(fsync="always"))
    yield leader, follower
    leader.close()
    follower.close()


async def replicate(leader_log: TabletLog, follower_log: TabletLog, epoch: int) -> FakeLeader:
    fake = FakeLeader(leader_log, epoch)
    fetcher = LeaderFetcher(
        "f",
        "l",
        "leader:1",
        fake,  # type: ignore[arg-type]
        wait_ms=10,
        request_timeout_s=1,
    )
    fetcher.follow(FollowedTablet(TABLET, follower_log, GroupCommitter(follower_log), epoch))
    fetcher.start()
    try:
        await asyncio.to_thread(
            wait_until,
            lambda: follower_log.end_offset == leader_log.end_offset,
            5,
            "the follower caught up",
        )
    finally:
        await fetcher.close()
    return fake


async def test_divergent_tail_of_an_old_epoch_is_truncated(
    logs: tuple[TabletLog, TabletLog],
) -> None:
    leader, follower = logs
    for log in logs:
        write(log, 0, [f"c{i}" for i in range(10)])
    write(follower, 1, ["lost1", "lost2", "lost3"])  # epoch 1 never reached the new leader
    write(leader, 2, ["n1", "n2", "n3", "n4", "n5"])
    fake = await replicate(leader, follower, 2)
    assert fake.epoch_queries == [1]
    assert values(follower) == values(leader)
    assert follower.leader_epochs == leader.leader_epochs


async def test_fast_double_failover_kip_279(logs: tuple[TabletLog, TabletLog]) -> None:
    """Follower epochs 0, 2; leader epochs 0, 1, 3: the leader answers epoch 1 ending at 8,
    the follower has no epoch 1 and its epoch 0 ends at 5: it truncates to 5, not 8."""
    leader, follower = logs
    for log in logs:
        write(log, 0, [f"c{i}" for i in range(5)])
    write(leader, 1, ["e1-a", "e1-b", "e1-c"])  # 5..7
    write(follower, 2, [f"e2-{i}" for i in range(7)])  # 5..11, never on the leader
    write(leader, 3, ["e3-a", "e3-b"])  # 8..9
    await replicate(leader, follower, 3)
    assert values(follower) == values(leader)
    assert not any(v.startswith("e2") for v in values(follower))


async def test_a_follower_behind_keeps_what_it_has(logs: tuple[TabletLog, TabletLog]) -> None:
    leader, follower = logs
    write(leader, 0, [f"c{i}" for i in range(5)])
    write(follower, 0, [f"c{i}" for i in range(5)])
    write(leader, 0, ["more"])
    write(leader, 1, ["epoch1"])
    await replicate(leader, follower, 1)
    assert values(follower) == values(leader)


async def test_high_watermark_follows_the_leader_but_not_past_own_end(
    logs: tuple[TabletLog, TabletLog],
) -> None:
    leader, follower = logs
    write(leader, 0, [f"c{i}" for i in range(6)])
    leader.set_high_watermark(4)
    await replicate(leader, follower, 0)
    assert follower.high_watermark == 4


async def test_durable_offsets_are_acknowledged(logs: tuple[TabletLog, TabletLog]) -> None:
    leader, follower = logs
    write(leader, 0, [f"c{i}" for i in range(6)])
    fake = await replicate(leader, follower, 0)
    acknowledged = [a.durable_offset for a in fake.acks] + fake.durable_seen
    assert max(acknowledged) == 6, "the follower acknowledged what it fsynced"
    assert all(d <= follower.flushed_offset for d in acknowledged)
