"""The high-watermark rule: how far a tablet is committed, on its leader and its followers.

Offsets are exclusive ends (see ``storage.log``): a replica's *position* is the end of what it
holds, and the **high watermark is the minimum position over the in-sync replicas** — every
record below it is held by each of them, so it survives the loss of all but one. It never moves
backwards (only a truncation by epoch lowers it, in storage).

Pure functions; thread-safe.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from storage.config import FsyncPolicy


class Acknowledged(Protocol):
    """What the leader knows of a follower's position (``leader.FollowerProgress``)."""

    @property
    def durable_offset(self) -> int | None:
        """What the follower acknowledged at this leader's epoch; None before its first fetch
        at this epoch."""
        ...


def acknowledgeable_offset(fsync: FsyncPolicy, flushed_offset: int, end_offset: int) -> int:
    """The end of what a replica may count as held (the leader) or acknowledge (a follower).

    Its fsynced end when its log fsyncs always, its written end otherwise: the log's fsync
    policy decides what an acknowledgement promises.
    """
    return flushed_offset if fsync == "always" else end_offset


def leader_high_watermark(
    current: int,
    leader: str,
    leader_position: int,
    hw_isr: Iterable[str],
    followers: Mapping[str, Acknowledged],
) -> int:
    """The leader's high watermark: the minimum position over ``hw_isr``, never below
    ``current``.

    ``hw_isr`` is the set that bounds it — the applied ISR plus the additions the leader has
    requested (a superset can only hold the high watermark back, never advance it wrongly).
    ``leader_position`` is the leader's :func:`acknowledgeable_offset`; ``followers`` are the
    leader's records of its followers (passed as they are, not copied: this runs at every
    acknowledgement). A member with no position yet (or unknown to the leader) keeps the high
    watermark where it is: progress from older epochs proves nothing.
    """
    position = leader_position
    for replica in hw_isr:
        if replica == leader:
            continue
        follower = followers.get(replica)
        durable = None if follower is None else follower.durable_offset
        if durable is None:
            return current
        position = min(position, durable)
    return max(current, position)


def high_watermark_restored(
    leader: str, hw_isr: Iterable[str], followers: Mapping[str, Acknowledged]
) -> bool:
    """Whether a leader's high watermark is back to (at least) what any leader exposed before.

    A new leader — or the same node after a restart — starts from its own recorded high
    watermark, which can lag the one its predecessor showed consumers (a follower learns the
    leader's with its next fetch; a checkpoint is written lazily). Every record a consumer may
    have seen below the old high watermark is held by every in-sync replica, so once each member
    of ``hw_isr`` has reported its position at this epoch (or the set is the leader alone, whose
    own end then bounds it), :func:`leader_high_watermark` is at least the old value again.
    Until then the leader must not answer a read with its high watermark. Pure.
    """
    for replica in hw_isr:
        if replica == leader:
            continue
        follower = followers.get(replica)
        if follower is None or follower.durable_offset is None:
            return False
    return True


def follower_high_watermark(current: int, leader_high_watermark: int, end_offset: int) -> int:
    """A follower's high watermark: its leader's, but not past its own end (it cannot count as
    committed what it does not hold yet), never below ``current``."""
    return max(current, min(leader_high_watermark, end_offset))
