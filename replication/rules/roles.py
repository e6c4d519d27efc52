"""Role assignment: which local replicas this node leads, follows, or deletes, from the map.

For every tablet the applied map places on this node, the node hosts a replica and gives it a
role: **lead** when the map names this node *and this process incarnation* as leader — a
restarted process never resumes leadership at an old epoch, because its unflushed tail may
differ from what followers copied; **follow** the named leader at its epoch; or **offline**
when there is no leader it can follow. (The taint rule, :mod:`replication.rules.taint`, may
still keep an elected replica offline.)

A local replica the map no longer places here is deleted only when the view is *complete* (it
reflects the whole committed map) and has *seen the creation* of the replica's log: a view
that lags — a node replaying its metadata — must never make it delete data. Log ids grow with
every creation of a log and are never reused, so "seen" is ``log id <= view.log_seq``.

Pure functions over immutable views; thread-safe.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from replication.model import ClusterView, LogInfo, TabletId, TabletInfo


@dataclass(frozen=True, slots=True)
class Lead:
    """This process leads the tablet at ``leader_epoch``."""

    leader_epoch: int


@dataclass(frozen=True, slots=True)
class Follow:
    """Fetch the tablet from ``leader`` (API address ``address``) at ``leader_epoch``."""

    leader: str
    address: str
    leader_epoch: int


@dataclass(frozen=True, slots=True)
class Offline:
    """Neither lead nor follow: the tablet has no leader, the leader is an older incarnation
    of this node, or the leader is a node the map does not know."""


Role = Lead | Follow | Offline
OFFLINE = Offline()


def role_for(info: TabletInfo, view: ClusterView, node_id: str, incarnation: int) -> Role:
    """The role the map gives this node's replica of ``info``'s tablet.

    ``incarnation`` is this process's; a leader entry naming this node at another incarnation
    means the tablet waits for the controller to elect again (offline).
    """
    if info.leader == node_id and info.leader_incarnation == incarnation:
        return Lead(info.leader_epoch)
    leader_node = view.nodes.get(info.leader) if info.leader else None
    if info.leader is None or info.leader == node_id or leader_node is None:
        return OFFLINE
    return Follow(info.leader, leader_node.address, info.leader_epoch)


@dataclass(frozen=True, slots=True)
class Hosted:
    """A tablet the map places on this node: its placement, its log, and its role here."""

    info: TabletInfo
    log: LogInfo
    role: Role


@dataclass(frozen=True, slots=True)
class RolePlan:
    """What a view asks of this node's replicas."""

    hosted: Mapping[TabletId, Hosted]
    """Every tablet to host, in the view's order."""
    delete: tuple[TabletId, ...]
    """Local replicas to delete (empty unless the view is complete)."""


def plan_roles(
    view: ClusterView,
    node_id: str,
    incarnation: int,
    local_log_ids: Mapping[TabletId, str],
    *,
    complete: bool,
) -> RolePlan:
    """The roles ``view`` gives this node (process ``incarnation``), and what it must delete.

    ``local_log_ids`` maps the replicas this node has open to the id of the log creation they
    belong to; ``complete`` says the view reflects the whole committed map. A tablet whose log
    is missing from the view is not hosted (the view is mid-deletion).
    """
    hosted: dict[TabletId, Hosted] = {}
    for tablet, info in view.tablets.items():
        if node_id not in info.replicas:
            continue
        log_info = view.logs.get(tablet.log)
        if log_info is None:
            continue
        hosted[tablet] = Hosted(info, log_info, role_for(info, view, node_id, incarnation))
    delete = (
        tuple(t for t, log_id in local_log_ids.items() if t not in hosted and seen_by(view, log_id))
        if complete
        else ()
    )
    return RolePlan(hosted, delete)


def seen_by(view: ClusterView, log_id: str) -> bool:
    """Has ``view`` applied the creation of the log whose id is ``log_id``? Only then may a
    replica of it that the view does not place here be deleted."""
    number = _log_id_number(log_id)
    return 0 < number <= view.log_seq


def is_newer_creation(found: str, expected: str) -> bool:
    """Does a local replica of log id ``found`` belong to a later creation of the log than the
    map's ``expected``? Then the map lags behind the disk: keep the replica, wait for it."""
    return _log_id_number(found) > _log_id_number(expected)


def _log_id_number(log_id: str) -> int:
    return int(log_id) if log_id.isdigit() else 0
