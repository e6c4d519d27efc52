"""IsrMaintainer: it asks the controller for the ISR the rules give, one change at a time, and
counts an addition at once but a removal only once the controller confirmed it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from replication.errors import StaleVersion
from replication.isr import IsrMaintainer
from replication.leader import TabletLeader
from replication.model import TabletId, TabletInfo
from storage.config import LogConfig
from storage.group_commit import GroupCommitter
from storage.log import TabletLog
from wire.batch import build_batch

LAG_MAX_S = 5.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Controller:
    """Stands in for the controller's alter_isr: records requests, confirms or refuses them."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, ...]] = []
        self.release = asyncio.Event()
        self.refuse = False

    async def alter_isr(self, leader: TabletLeader, isr: tuple[str, ...]) -> TabletInfo:
        self.requests.append(isr)
        await self.release.wait()
        if self.refuse:
            raise StaleVersion("the tablet changed")
        return replace(leader.info, isr=isr, version=leader.info.version + 1)


@pytest.fixture
def log(tmp_path: Path) -> Iterator[TabletLog]:
    opened = TabletLog.open(tmp_path / "t", LogConfig(fsync="never"))
    yield opened
    opened.close()


async def leading(log: TabletLog, clock: Clock, isr: tuple[str, ...]) -> TabletLeader:
    info = TabletInfo("log", 0, ("a", "b", "c"), "a", 3, 1, isr, 0)
    leader = TabletLeader(TabletId("log", 0), "a", log, GroupCommitter(log), info, 1, clock)
    leader.append(build_batch([(None, b"v%d" % i) for i in range(4)]))
    await asyncio.sleep(0)
    return leader


def maintainer(leader: TabletLeader, controller: Controller) -> IsrMaintainer:
    replicas = SimpleNamespace(leaders={leader.tablet: leader})
    return IsrMaintainer(replicas, controller.alter_isr, LAG_MAX_S, interval_s=0.01)  # type: ignore[arg-type]


async def test_a_lagging_member_is_removed_once_confirmed(log: TabletLog) -> None:
    clock, controller = Clock(), Controller()
    leader = await leading(log, clock, ("a", "b", "c"))
    isr = maintainer(leader, controller)
    leader.on_fetch("b", 4, 4, 0)
    clock.now += LAG_MAX_S + 1  # c never fetched; b fetches again, caught up
    leader.on_fetch("b", 4, 4, 0)
    isr.check(leader)
    await asyncio.sleep(0)
    assert controller.requests == [("a", "b")]
    assert leader.alter_isr_in_flight
    assert leader.info.isr == ("a", "b", "c"), "a removal counts only once confirmed"
    isr.check(leader)
    await asyncio.sleep(0)
    assert len(controller.requests) == 1, "one change in flight per tablet"
    controller.release.set()
    await asyncio.sleep(0.01)
    assert leader.isr == ("a", "b")
    assert not leader.alter_isr_in_flight
    assert isr.changes_requested == 1


async def test_a_caught_up_replica_counts_while_its_addition_is_pending(log: TabletLog) -> None:
    clock, controller = Clock(), Controller()
    leader = await leading(log, clock, ("a", "b"))
    isr = maintainer(leader, controller)
    leader.on_fetch("b", 4, 4, 0)
    leader.on_fetch("c", 4, 4, 0)
    isr.check(leader)
    await asyncio.sleep(0)
    assert controller.requests == [("a", "b", "c")]
    assert leader.pending_isr_additions == {"c"}
    assert leader.hw_isr() == {"a", "b", "c"}
    controller.release.set()
    await asyncio.sleep(0.01)
    assert leader.isr == ("a", "b", "c")
    assert leader.pending_isr_additions == set()


async def test_a_refused_change_is_undone_and_tried_again(log: TabletLog) -> None:
    clock, controller = Clock(), Controller()
    leader = await leading(log, clock, ("a", "b"))
    isr = maintainer(leader, controller)
    leader.on_fetch("b", 4, 4, 0)
    leader.on_fetch("c", 4, 4, 0)
    controller.refuse = True
    controller.release.set()
    isr.check(leader)
    await asyncio.sleep(0.01)
    assert leader.pending_isr_additions == set(), "an unconfirmed addition stops counting"
    assert not leader.alter_isr_in_flight
    assert leader.isr == ("a", "b")
    isr.check(leader)
    await asyncio.sleep(0.01)
    assert controller.requests == [("a", "b", "c"), ("a", "b", "c")]


async def test_nothing_is_asked_when_in_sync_or_closed(log: TabletLog) -> None:
    clock, controller = Clock(), Controller()
    leader = await leading(log, clock, ("a", "b", "c"))
    isr = maintainer(leader, controller)
    leader.on_fetch("b", 4, 4, 0)
    leader.on_fetch("c", 4, 4, 0)
    isr.check(leader)
    clock.now += LAG_MAX_S + 1
    leader.close()
    isr.check(leader)
    await asyncio.sleep(0)
    assert controller.requests == []


async def test_run_checks_every_led_tablet(log: TabletLog) -> None:
    clock, controller = Clock(), Controller()
    leader = await leading(log, clock, ("a", "b"))
    isr = maintainer(leader, controller)
    leader.on_fetch("b", 4, 4, 0)
    leader.on_fetch("c", 4, 4, 0)
    task = asyncio.create_task(isr.run())
    try:
        async with asyncio.timeout(2):
            while not controller.requests:
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert controller.requests == [("a", "b", "c")]
