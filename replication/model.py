"""The cluster metadata map as pure logic: frozen views, the initial state, applying entries.

Raft (``raft_state.py``) replicates journal entries, the encoded commands of
:mod:`replication.commands`; every voter feeds them, in log order, to :func:`apply_entry`, which
decodes the entry and applies the command to a plain-dict state (layout in
:mod:`replication.commands`). :func:`to_view` turns the state into an immutable
:class:`ClusterView` that the rest of the node reads from any thread.

<<<<<<< HEAD
``apply_entry`` never raises: a malformed, stale or impossible command is recorded as a no-op
(``Result(ok=False, error=code, ...)``), because a raising apply would make every voter retry
the entry forever and hang the cluster (docs/architecture.md, metadata commands).
=======
A command is a plain dict ``{"op": name, "v": 1, ...fields}`` made by the builders below. Rules
every command obeys (see docs/architecture.md#metadata-commands):
>>>>>>> h-docs

Pure and deterministic; the view types are immutable and thread-safe. ``apply_entry`` mutates
the state it is given and is not thread-safe.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

from replication.command_base import Rejected, Result, State
from replication.command_codec import decode

STATE_FORMAT_VERSION = 1
"""Layout version of the state (kept in snapshots as ``format``); entries have their own
(:data:`replication.command_codec.ENCODING_VERSION`)."""


class TabletId(NamedTuple):
    """A tablet: the ``index``-th of log ``log`` (equal to the plain tuple ``(log, index)``)."""

    log: str
    index: int  # type: ignore[assignment]  # shadows tuple.index(), as the design names it


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """A node as the map knows it. ``incarnation`` changes on every process start."""

    id: str
    address: str
    alive: bool
    incarnation: int


@dataclass(frozen=True, slots=True)
class TabletInfo:
    """One tablet's placement and leadership.

    ``replicas[0]`` is the preferred leader. ``leader_epoch`` increases on every leader change
    (including to None); ``version`` on every change at all. ``leader_incarnation`` is the
    incarnation of the leader process at election: another incarnation must not act as leader.
    """

    log: str
    index: int
    replicas: tuple[str, ...]
    leader: str | None
    leader_epoch: int
    leader_incarnation: int
    isr: tuple[str, ...]
    version: int

    @property
    def id(self) -> TabletId:
        return TabletId(self.log, self.index)


@dataclass(frozen=True, slots=True)
class LogInfo:
    """A log: its settings (``LogSettings.to_dict()`` shape, read-only) and tablet count.

    ``log_id`` is unique over the cluster's lifetime: a log deleted and created again under the
    same name gets a new one, so replicas of the old log are never mistaken for the new one.
    """

    name: str
    settings: Mapping[str, Any]
    tablet_count: int
    log_id: str = ""


@dataclass(frozen=True, slots=True)
class ClusterView:
    """An immutable snapshot of the whole map after the entry at ``applied_index`` (0: none).

    Safe to share between threads; a new view replaces it after every applied command.
    """

    cluster_name: str
    controller: str | None
    controller_term: int
    nodes: Mapping[str, NodeInfo]
    logs: Mapping[str, LogInfo]
    tablets: Mapping[TabletId, TabletInfo]
    consumer_offsets: Mapping[tuple[str, str, int], int]
    applied_index: int
    #: The last log id handed out (ids grow with every creation and are never reused): a view
    #: whose ``log_seq`` is below a local replica's log id has not yet seen that log created.
    log_seq: int
    _by_log: Mapping[str, tuple[TabletInfo, ...]] = field(repr=False, compare=False)

    def tablets_of(self, log: str) -> tuple[TabletInfo, ...]:
        """The tablets of ``log`` in index order (empty if the log does not exist)."""
        return self._by_log.get(log, ())

    def tablet(self, log: str, index: int) -> TabletInfo | None:
        return self.tablets.get(TabletId(log, index))

    def leader_address(self, tablet: TabletInfo) -> str | None:
        """API ``host:port`` of the tablet's leader, or None when it has none."""
        if tablet.leader is None:
            return None
        node = self.nodes.get(tablet.leader)
        return node.address if node else None

    def tablets_led_by(self, node: str) -> list[TabletInfo]:
        return [t for t in self.tablets.values() if t.leader == node]

    def tablets_replicated_on(self, node: str) -> list[TabletInfo]:
        """Every tablet with a replica on ``node``, whether it leads it or follows."""
        return [t for t in self.tablets.values() if node in t.replicas]

    def live_nodes(self) -> list[str]:
        return [n.id for n in self.nodes.values() if n.alive]


def initial_state(cluster_name: str, nodes: Mapping[str, str]) -> State:
    """The state every node starts from: the config's nodes (id → API address), none alive.

    Every node computes the same state from the same config, so the Raft log can be replayed on
    top of it anywhere.
    """
    return {
        "format": STATE_FORMAT_VERSION,
        "cluster_name": cluster_name,
        "controller_term": 0,
        "controller": None,
        "nodes": {
            node: {"address": address, "alive": False, "incarnation": 0}
            for node, address in nodes.items()
        },
        "logs": {},
        "log_ids": {},
        "log_seq": 0,
        "tablets": {},
        "offsets": {},
    }


def apply_entry(state: State, entry: object) -> Result:
    """Decode one journal entry and apply its command to ``state`` in place; never raises.

    Rejected commands leave the state unchanged and return ``ok=False`` with an error code:
    ``bad_command``, ``unsupported_version``, ``unknown_op``, ``stale_term``, ``unclaimed_term``,
    ``stale_epoch``, ``stale_version``, ``stale_incarnation``, ``unknown_node``, ``not_found``,
    ``already_exists``, ``invalid``, ``ineligible_replica`` or ``internal`` (a bug).
    """
    try:
        return decode(entry).apply(state)
    except Rejected as rejected:
        return Result.rejected(rejected.code, rejected.message)
    except Exception as exc:  # noqa: BLE001 - last line of defence: apply must never raise
        return Result.rejected("internal", f"{type(exc).__name__}: {exc}")


def to_view(state: State, applied_index: int = 0) -> ClusterView:
    """An immutable snapshot of ``state`` (copies everything; cost is linear in the map)."""
    nodes = {
        node: NodeInfo(node, rec["address"], bool(rec["alive"]), rec["incarnation"])
        for node, rec in state["nodes"].items()
    }
    tablets: dict[TabletId, TabletInfo] = {}
    by_log: dict[str, list[TabletInfo]] = {}
    for (log, index), rec in state["tablets"].items():
        info = TabletInfo(
            log,
            index,
            tuple(rec["replicas"]),
            rec["leader"],
            rec["leader_epoch"],
            rec["leader_incarnation"],
            tuple(rec["isr"]),
            rec["version"],
        )
        tablets[TabletId(log, index)] = info
        by_log.setdefault(log, []).append(info)
    logs = {
        name: LogInfo(
            name,
            MappingProxyType(dict(settings)),
            settings["tablets"],
            str(state["log_ids"].get(name, "")),
        )
        for name, settings in state["logs"].items()
    }
    return ClusterView(
        cluster_name=state["cluster_name"],
        controller=state["controller"],
        controller_term=state["controller_term"],
        nodes=MappingProxyType(nodes),
        logs=MappingProxyType(logs),
        tablets=MappingProxyType(tablets),
        consumer_offsets=MappingProxyType(dict(state["offsets"])),
        applied_index=applied_index,
        log_seq=int(state.get("log_seq", 0)),
        _by_log=MappingProxyType(
            {log: tuple(sorted(ts, key=lambda t: t.index)) for log, ts in by_log.items()}
        ),
    )
