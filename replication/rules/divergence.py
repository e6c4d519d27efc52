"""Where a follower's log diverges from its new leader's (leader epochs, Kafka KIP-101/279).

Before fetching from a leader, a follower asks it about its own latest epoch; the leader answers
with the largest epoch it knows at or below that one and where that epoch ends in *its* log
(``storage.epochs.epoch_end_offset``; (-1, -1) when it knows none). Everything the follower
holds beyond the smaller of the two ends of that epoch was never on the leader's log, and is
truncated. Comparing epochs rather than offsets is what makes this safe after two quick
failovers (KIP-279): a follower that never had the leader's epoch uses the end of its own
largest epoch below it.

Offsets are exclusive ends; ``epochs`` are a log's (epoch, start_offset) pairs, oldest first
(``TabletLog.leader_epochs``). Pure functions; thread-safe.
"""

from __future__ import annotations

from collections.abc import Sequence

from storage.epochs import epoch_end_offset


def epoch_to_reconcile(
    epochs: Sequence[tuple[int, int]], start_offset: int, end_offset: int
) -> int | None:
    """The epoch to ask the leader about: the follower's latest, or None when nothing it holds
    could diverge (an empty log, or no epoch known) and it may fetch at once."""
    if not epochs or end_offset == start_offset:
        return None
    return epochs[-1][0]


def divergence_point(
    epochs: Sequence[tuple[int, int]],
    start_offset: int,
    end_offset: int,
    leader_epoch: int,
    leader_end: int,
) -> int:
    """The offset to truncate the follower's log to; ``end_offset`` when nothing diverges.

    (``leader_epoch``, ``leader_end``) is the leader's answer to :func:`epoch_to_reconcile`'s
    epoch. With no common epoch (``leader_epoch`` < 0) nothing the follower holds is on the
    leader's log: it keeps nothing from ``start_offset`` on. Otherwise it keeps up to the
    smaller of the leader's end of that epoch and its own (the end of its largest epoch at or
    below it; ``start_offset`` if it has none).
    """
    if leader_epoch < 0:
        return start_offset
    _, own_end = epoch_end_offset(epochs, leader_epoch, end_offset)
    keep = min(leader_end, own_end if own_end >= 0 else start_offset)
    return min(keep, end_offset)
