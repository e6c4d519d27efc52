"""Which local replicas lost committed records, and what they may do until they have them again.

A replica whose recovery cut its log below its checkpointed high watermark (a damaged file), or
that was cut before a corrupt batch found later, is *tainted*: records every in-sync replica was
promised to hold are gone from it. Were it elected leader, followers would truncate to match it
and acknowledged writes would vanish everywhere (the "last replica standing" problem, Kafka
KIP-966). So a tainted replica never leads: if the map makes it leader it stays offline and asks
the controller to move leadership to another live in-sync replica; with none, the tablet stays
unavailable rather than lose data. The taint clears once, as a follower, it has caught up to its
leader's high watermark.

Event-loop thread only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from replication.errors import ReplicationError
from replication.model import ClusterView, TabletId, TabletInfo

log = logging.getLogger(__name__)

HandOff = Callable[[TabletInfo, str], Awaitable[object]]
"""Ask the controller to make ``successor`` the leader of the tablet (at ``info``'s epoch)."""


class ReplicaHealth:
    """Tainted and to-be-repaired replicas of one node."""

    def __init__(self, node_id: str, hand_off: HandOff | None) -> None:
        self._node_id = node_id
        self._hand_off = hand_off
        self._tainted: set[TabletId] = set()
        self._repair: set[TabletId] = set()
        self._handed_off: dict[TabletId, int] = {}  # the epoch we last asked to move away from
        self._tasks: set[asyncio.Task[None]] = set()

    def taint(self, tablet: TabletId, *, end_offset: int) -> None:
        if tablet not in self._tainted:
            log.error(
                "%s: this replica lost committed records (its log now ends at %d); it "
                "will not lead until it has caught up with a leader",
                tablet,
                end_offset,
            )
        self._tainted.add(tablet)

    def caught_up(self, tablet: TabletId) -> None:
        """As a follower, the replica reached its leader's high watermark: whole again."""
        if tablet in self._tainted:
            log.info("%s: caught up with the leader; eligible to lead again", tablet)
            self._tainted.discard(tablet)

    def request_repair(self, tablet: TabletId) -> None:
        """The next open of the tablet's log cuts it before its first corrupt batch."""
        self._repair.add(tablet)

    def take_repair(self, tablet: TabletId) -> bool:
        if tablet in self._repair:
            self._repair.discard(tablet)
            return True
        return False

    def may_repair(self, tablet: TabletId, info: TabletInfo, view: ClusterView) -> bool:
        """Cutting a corrupt replica is safe unless it is the leader with no live in-sync
        replica to take over (then it holds the only readable copy of what follows)."""
        del tablet
        return info.leader != self._node_id or _successor(info, view, self._node_id) is not None

    def may_lead(self, tablet: TabletId, info: TabletInfo, view: ClusterView) -> bool:
        """False for a tainted replica; it then asks (once per epoch) to hand leadership over."""
        if tablet not in self._tainted:
            return True
        successor = _successor(info, view, self._node_id)
        if self._handed_off.get(tablet) == info.leader_epoch:
            return False
        self._handed_off[tablet] = info.leader_epoch
        if successor is None or self._hand_off is None:
            log.error(
                "%s: elected at epoch %d but this replica lost committed records and no "
                "other in-sync replica is alive: the tablet stays unavailable",
                tablet,
                info.leader_epoch,
            )
            return False
        log.warning(
            "%s: elected at epoch %d but this replica lost committed records; asking "
            "to hand leadership to %s",
            tablet,
            info.leader_epoch,
            successor,
        )
        task = asyncio.get_running_loop().create_task(self._request(info, successor))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return False

    async def _request(self, info: TabletInfo, successor: str) -> None:
        assert self._hand_off is not None
        try:
            await self._hand_off(info, successor)
        except ReplicationError as exc:
            log.warning("%s/%d: hand-off to %s failed: %s", info.log, info.index, successor, exc)
            self._handed_off.pop(TabletId(info.log, info.index), None)  # try again next view


def _successor(info: TabletInfo, view: ClusterView, node_id: str) -> str | None:
    for replica in info.isr:
        node = view.nodes.get(replica)
        if replica != node_id and node is not None and node.alive:
            return replica
    return None
