"""Keeping each led tablet's in-sync replica set honest.

Every ``interval_s`` the leader of each tablet looks at its followers: an ISR member that has not
caught up within ``replica_lag_max_ms`` is removed, a replica outside the ISR that has caught up
to the high watermark (and past this epoch's start) is added back. Changes go to the controller
as compare-and-set commands on (leader, epoch, version) and take effect for the high watermark
only once confirmed — except additions, which count as soon as they are requested, because a
larger set can only hold the high watermark back, never advance it wrongly.

Event-loop thread only. One change in flight per tablet.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from replication.errors import ReplicationError
from replication.leader import TabletLeader
from replication.model import TabletInfo
from replication.replica_manager import ReplicaManager

log = logging.getLogger(__name__)

AlterIsr = Callable[[TabletLeader, tuple[str, ...]], Awaitable[TabletInfo]]


class IsrMaintainer:
    """Periodic ISR shrink/expand for every tablet this node leads."""

    def __init__(
        self,
        replicas: ReplicaManager,
        alter_isr: AlterIsr,
        lag_max_s: float,
        interval_s: float = 0.1,
    ) -> None:
        self._replicas = replicas
        self._alter_isr = alter_isr
        self._lag_max_s = lag_max_s
        self._interval_s = interval_s
        self._tasks: set[asyncio.Task[None]] = set()
        self.changes_requested = 0

    async def run(self) -> None:
        """Check every led tablet forever (cancel to stop)."""
        try:
            while True:
                for leader in list(self._replicas.leaders.values()):
                    self.check(leader)
                await asyncio.sleep(self._interval_s)
        finally:
            for task in self._tasks:
                task.cancel()

    def check(self, leader: TabletLeader) -> None:
        """Request an ISR change for ``leader`` if one is due and none is in flight."""
        if leader.closed or leader.alter_isr_in_flight:
            return
        lagging = set(leader.lagging_followers(self._lag_max_s))
        caught_up = set(leader.caught_up_followers())
        if not lagging and not caught_up:
            return
        isr = [
            r
            for r in leader.info.replicas
            if (r in leader.isr and r not in lagging) or r in caught_up
        ]
        if leader.node_id not in isr:
            isr.insert(0, leader.node_id)
        task = asyncio.create_task(self._change(leader, tuple(isr), caught_up, lagging))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _change(
        self, leader: TabletLeader, isr: tuple[str, ...], added: set[str], removed: set[str]
    ) -> None:
        leader.alter_isr_in_flight = True
        leader.pending_isr_additions |= added
        self.changes_requested += 1
        log.info(
            "%s: ISR %s -> %s (lagging %s, caught up %s)",
            leader.tablet,
            leader.isr,
            isr,
            sorted(removed),
            sorted(added),
        )
        confirmed = False
        try:
            info = await self._alter_isr(leader, isr)
            confirmed = True
            leader.update_info(info)
        except ReplicationError as exc:
            log.warning("%s: ISR change to %s not made: %s", leader.tablet, isr, exc)
        finally:
            leader.alter_isr_in_flight = False
            if not confirmed:
                leader.pending_isr_additions -= added
