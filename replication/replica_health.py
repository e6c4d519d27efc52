"""Which local replicas lost committed records, and what they may do until they have them again.

A replica whose recovery cut its log below its checkpointed high watermark (a damaged file), or
that was cut before a corrupt batch found later, is *tainted*: it never leads until, as a
follower, it has caught up to its leader's high watermark. The rule and its reasons are
``replication.rules.taint``; :class:`ReplicaHealth` keeps the node's tainted and to-be-repaired
replicas and asks the controller for the hand-offs the rule calls for.

Event-loop thread only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from replication.errors import ReplicationError
from replication.model import ClusterView, TabletId, TabletInfo
from replication.rules import taint
from replication.rules.taint import Leadership

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
        self._handed_off: dict[TabletId, int] = {}  # the epoch last handled by the taint rule
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
        return taint.may_repair(info, view, self._node_id)

    def may_lead(self, tablet: TabletId, info: TabletInfo, view: ClusterView) -> bool:
        """False for a tainted replica; it then asks (once per epoch) to hand leadership over."""
        successor = taint.successor(info, view, self._node_id)
        decision = taint.leadership(
            tablet in self._tainted,
            self._handed_off.get(tablet),
            info.leader_epoch,
            has_successor=successor is not None,
            can_hand_off=self._hand_off is not None,
        )
        if decision is Leadership.LEAD:
            return True
        if decision is Leadership.ALREADY_ASKED:
            return False
        self._handed_off[tablet] = info.leader_epoch
        if decision is Leadership.UNAVAILABLE:
            log.error(
                "%s: elected at epoch %d but this replica lost committed records and no "
                "other in-sync replica is alive: the tablet stays unavailable",
                tablet,
                info.leader_epoch,
            )
            return False
        assert successor is not None  # a hand-off names one
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
