"""The taint rule: a replica that lost committed records never leads until it has them again.

Records below the high watermark were promised to be on every in-sync replica. A replica that
lost some — its recovery cut the log below its checkpointed high watermark (a damaged file), or
it was cut before a corrupt batch found later — is *tainted*. Were it elected, followers would
truncate to match it and acknowledged writes would vanish everywhere (the "last replica
standing" problem, Kafka KIP-966). So:

* its leader removes it from the ISR at its first fetch from below what it had (not after the
  lag timeout), so the controller cannot elect it;
* if the map makes it leader anyway, it stays offline and asks the controller to hand
  leadership to another live in-sync replica — with none, the tablet stays unavailable rather
  than lose data;
* the taint clears once, as a follower, it has caught up to its leader's high watermark.

Offsets are exclusive ends. Pure functions; thread-safe.
"""

from __future__ import annotations

import enum

from replication.model import ClusterView, TabletInfo


def tainted_at_open(repair_requested: bool, lost_committed: bool) -> bool:
    """Whether a replica just opened is tainted: it was cut before a corrupt batch on request
    (``repair_requested``), or recovery cut it below its checkpointed high watermark."""
    return repair_requested or lost_committed


def lost_committed_records(
    previous_fetch_offset: int | None, fetch_offset: int, high_watermark: int
) -> bool:
    """Leader side: does a follower's fetch show it lost committed records?

    It fetches from below its previous fetch (None: no fetch yet at this epoch) *and* below the
    high watermark: it truncated corrupt data or restarted without them.
    """
    return (
        previous_fetch_offset is not None
        and fetch_offset < previous_fetch_offset
        and fetch_offset < high_watermark
    )


def caught_up_with_leader(end_offset: int, leader_high_watermark: int) -> bool:
    """Follower side: it holds everything its leader has committed, so a taint clears."""
    return end_offset >= leader_high_watermark


def successor(info: TabletInfo, view: ClusterView, node_id: str) -> str | None:
    """The first in-sync replica, in ISR order, other than ``node_id`` that ``view`` has alive:
    who may take over from this node. None when there is none."""
    for replica in info.isr:
        node = view.nodes.get(replica)
        if replica != node_id and node is not None and node.alive:
            return replica
    return None


def may_repair(info: TabletInfo, view: ClusterView, node_id: str) -> bool:
    """Whether this node may cut its corrupt replica of ``info``'s tablet: yes unless it is the
    leader and no live in-sync replica can take over (then it holds the only readable copy of
    what follows the damage)."""
    return info.leader != node_id or successor(info, view, node_id) is not None


class Leadership(enum.Enum):
    """What a replica the map names leader does."""

    LEAD = "lead"
    """Not tainted: lead."""
    HAND_OFF = "hand_off"
    """Tainted: stay offline and ask the controller to move leadership to the successor."""
    UNAVAILABLE = "unavailable"
    """Tainted, and no successor (or no controller to ask): stay offline; the tablet is
    unavailable rather than lose data."""
    ALREADY_ASKED = "already_asked"
    """Tainted, and already handled at this leader epoch: stay offline, ask nothing again."""


def leadership(
    tainted: bool,
    handled_epoch: int | None,
    leader_epoch: int,
    has_successor: bool,
    can_hand_off: bool,
) -> Leadership:
    """The taint rule for a replica elected at ``leader_epoch``.

    ``handled_epoch`` is the epoch at which this replica last asked for a hand-off or gave up
    (None: never), so it asks once per epoch; ``has_successor`` says whether a live in-sync
    replica can take over (:func:`successor`), ``can_hand_off`` whether it has a way to ask the
    controller.
    """
    if not tainted:
        return Leadership.LEAD
    if handled_epoch == leader_epoch:
        return Leadership.ALREADY_ASKED
    if not has_successor or not can_hand_off:
        return Leadership.UNAVAILABLE
    return Leadership.HAND_OFF
