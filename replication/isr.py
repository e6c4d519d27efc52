"""Keeping each led tablet's in-sync replica set honest.

Every ``interval_s`` the leader of each tablet looks at its followers: an ISR member that has not
caught up within ``replica_lag_max_ms`` is removed, a replica outside the ISR that has caught up
to the high watermark (and past this epoch's start) is added back. Changes go to the controller
as compare-and-set commands on (leader, epoch, version) and take effect for the high watermark
only once confirmed — except additions, which count as soon as they are requested, because a
larger set can only hold the high watermark back, never advance it wrongly. The decisions are
``replication.rules.isr``; this module runs them and carries out the changes.

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
from replication.rules.isr import IsrChange, isr_change

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
        change = isr_change(
            leader.info.replicas,
            leader.isr,
            leader.node_id,
            leader.lagging_followers(self._lag_max_s),
            leader.caught_up_followers(),
        )
        if change is None:
            return
        task = asyncio.create_task(self._change(leader, change))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _change(self, leader: TabletLeader, change: IsrChange) -> None:
        isr, added = change.isr, change.added
        leader.alter_isr_in_flight = True
        leader.pending_isr_additions |= added
        self.changes_requested += 1
        log.info(
            "%s: ISR %s -> %s (lagging %s, caught up %s)",
            leader.tablet,
            leader.isr,
            isr,
            sorted(change.removed),
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
