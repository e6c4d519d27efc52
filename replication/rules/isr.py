"""The in-sync replica rules: caught up, lagging, rejoining, and the ISR a leader asks for.

A follower is *in sync* while it keeps up with its leader. Like Kafka's ``lastCaughtUpTime``,
the leader keeps, per follower, the last time it was known to hold everything the leader held:
a member whose time is older than ``replica_lag_max_ms`` leaves the ISR; a replica outside it
rejoins once it has acknowledged up to the high watermark *and* past the first offset of the
leader's epoch (so it has truncated any divergent tail from older epochs). Offsets are
exclusive ends; times are seconds on the leader's monotonic clock.

Pure functions; thread-safe.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass


def last_caught_up_s(
    previous_s: float,
    now: float,
    fetch_offset: int,
    leader_end: int,
    leader_end_at_last_fetch: int,
    last_fetch_s: float,
) -> float:
    """When the follower was last caught up, given its fetch from ``fetch_offset`` now.

    A fetch from the leader's current end (``leader_end``) is caught up now. A fetch from at
    least where the leader ended at the follower's previous fetch shows the follower was caught
    up then, at ``last_fetch_s`` (0.0: no earlier fetch at this epoch, which proves nothing).
    Otherwise nothing changes: the time never moves backwards.
    """
    if fetch_offset >= leader_end:
        return now
    if fetch_offset >= leader_end_at_last_fetch and last_fetch_s != 0.0:
        return max(previous_s, last_fetch_s)
    return previous_s


def lagging_members(
    isr: Iterable[str],
    leader: str,
    last_caught_up: Mapping[str, float],
    now: float,
    lag_max_s: float,
) -> list[str]:
    """ISR members (not the leader) last caught up more than ``lag_max_s`` ago, in ISR order.

    ``last_caught_up`` holds the followers the leader tracks; a member it does not track is
    left alone (the controller's map decides about it).
    """
    return [
        r
        for r in isr
        if r != leader and r in last_caught_up and now - last_caught_up[r] > lag_max_s
    ]


def rejoining_replicas(
    durable: Mapping[str, int | None],
    isr: Collection[str],
    pending_additions: Collection[str],
    high_watermark: int,
    epoch_start_offset: int,
) -> list[str]:
    """Followers outside the ISR (and not already being added) that may join it again.

    ``durable`` maps each follower, in replica order, to what it acknowledged at this epoch
    (None before its first fetch). It must reach both the high watermark and
    ``epoch_start_offset``, the first offset written at this epoch.
    """
    return [
        r
        for r, offset in durable.items()
        if r not in isr
        and r not in pending_additions
        and offset is not None
        and offset >= high_watermark
        and offset >= epoch_start_offset
    ]


@dataclass(frozen=True, slots=True)
class IsrChange:
    """An ISR the leader should ask the controller for, and why."""

    isr: tuple[str, ...]
    """The new set, in replica order, the leader always in it."""
    removed: frozenset[str]
    """Members that lag."""
    added: frozenset[str]
    """Replicas that caught up."""


def isr_change(
    replicas: Sequence[str],
    isr: Collection[str],
    leader: str,
    lagging: Collection[str],
    caught_up: Collection[str],
) -> IsrChange | None:
    """The ISR to request: ``isr`` without ``lagging``, with ``caught_up``; None if no change.

    The new set keeps replica order (the order the map stores) and always holds the leader,
    first if it was missing.
    """
    if not lagging and not caught_up:
        return None
    new = [r for r in replicas if (r in isr and r not in lagging) or r in caught_up]
    if leader not in new:
        new.insert(0, leader)
    return IsrChange(tuple(new), frozenset(lagging), frozenset(caught_up))
