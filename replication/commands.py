"""The metadata map's commands: one frozen dataclass each, with its one ``apply`` path.

Callers build a command (``FenceNode(term, node, incarnation)``) and propose it; Raft journals
its encoding (:mod:`replication.command_codec`), and every voter decodes the entry and calls
``apply`` on its state, in log order (:func:`replication.model.apply_entry`). Rules every
command obeys (docs/architecture.md, metadata commands):

* ``apply`` checks everything before it changes anything, so a rejected command
  (:class:`~replication.command_base.Rejected`) leaves the state untouched.
* Controller commands carry the ``term`` of the controller claim they were issued under; a
  command from any other term is rejected (``stale_term``/``unclaimed_term``), so a deposed
  controller's queued commands are no-ops.
* Tablet changes requested by others are compare-and-set on ``leader_epoch`` and ``version``.

State layout (builtins only, so snapshots and journal entries pickle safely)::

    controller_term: int            controller: str | None
    nodes:   {id: {"address": str, "alive": bool, "incarnation": int}}
    logs:    {name: settings dict}  (LogSettings.to_dict())
    log_ids: {name: int}            log_seq: int (last log id handed out; ids never reused)
    tablets: {(log, index): {"replicas": [id], "leader": id | None, "leader_epoch": int,
                             "leader_incarnation": int, "isr": [id], "version": int}}
    offsets: {(group, log, index): offset}

Invariant: every change to a tablet bumps its ``version``; every change of its leader bumps
``leader_epoch`` as well. Commands are immutable and thread-safe; ``apply`` mutates the state it
is given and is for the thread applying Raft entries only.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from replication.command_base import (
    MAX_TABLETS,
    Assignments,
    Command,
    Count,
    NodeId,
    NodeIds,
    Offsets,
    Rejected,
    Result,
    Settings,
    State,
    Text,
)
from replication.placement import choose_leader, failover_leader

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


# ----------------------------------------------------------------------------- shared checks


def _check_term(state: State, term: int) -> None:
    """Only the current claim's term is accepted."""
    current = state["controller_term"]
    if term < current:
        raise Rejected("stale_term", f"term {term} is older than the controller term {current}")
    if term > current:
        raise Rejected("unclaimed_term", f"term {term} has not been claimed (current {current})")


def _distinct(nodes: Sequence[str], what: str) -> list[str]:
    if len(set(nodes)) != len(nodes):
        raise Rejected("invalid", f"{what} names a node twice")
    return list(nodes)


def _tablet(state: State, log: str, index: int) -> dict[str, Any]:
    tablet: dict[str, Any] | None = state["tablets"].get((log, index))
    if tablet is None:
        raise Rejected("not_found", f"no tablet {index} of log {log!r}")
    return tablet


def _alive(state: State) -> Callable[[str], bool]:
    nodes = state["nodes"]
    return lambda node: node in nodes and bool(nodes[node]["alive"])


def _unclean(state: State, log: str) -> bool:
    return bool(state["logs"].get(log, {}).get("unclean_leader_election", False))


def _set_leader(state: State, tablet: dict[str, Any], leader: str | None) -> None:
    tablet["leader"] = leader
    tablet["leader_epoch"] += 1
    tablet["leader_incarnation"] = state["nodes"][leader]["incarnation"] if leader else 0


# ----------------------------------------------------------------------------- commands


@dataclass(frozen=True, slots=True)
class ClaimController(Command):
    """``node`` becomes controller for Raft ``term`` (newer than the current claim)."""

    op: ClassVar[str] = "claim_controller"
    node: NodeId
    term: Count

    def apply(self, state: State) -> Result:
        current, holder = state["controller_term"], state["controller"]
        if self.term < current or (self.term == current and holder != self.node):
            raise Rejected(
                "stale_term", f"term {self.term} is not newer than {current} (held by {holder})"
            )
        if self.term == current:
            return Result(ok=True, changed=False)
        state["controller_term"], state["controller"] = self.term, self.node
        return Result(ok=True, changed=True)


@dataclass(frozen=True, slots=True)
class RegisterNode(Command):
    """``node`` runs process ``incarnation`` at API ``address``: alive again.

    A new incarnation of a tablet's leader hands the tablet to a new epoch (and to another
    in-sync replica if one is alive); leaderless tablets it is in sync for get it as leader.
    """

    op: ClassVar[str] = "register_node"
    term: Count
    node: NodeId
    address: Text
    incarnation: Count

    def apply(self, state: State) -> Result:
        _check_term(state, self.term)
        node, incarnation = self.node, self.incarnation
        old = state["nodes"].get(node)
        if old is not None and incarnation < old["incarnation"]:
            raise Rejected(
                "stale_incarnation", f"{node} already runs incarnation {old['incarnation']}"
            )
        restarted = old is None or incarnation != old["incarnation"]
        if not restarted and old is not None and old["alive"] and old["address"] == self.address:
            return Result(ok=True, changed=False, tablets_changed=0)
        state["nodes"][node] = {"address": self.address, "alive": True, "incarnation": incarnation}
        alive = _alive(state)
        changed = 0
        for (log, _), tablet in state["tablets"].items():
            if restarted and tablet["leader"] == node:
                # Never resume at the old epoch: the restarted process may have lost an unflushed
                # tail that followers already copied, so a new epoch makes them reconcile.
                new = choose_leader(tablet["replicas"], tablet["isr"], alive, exclude=node) or node
                _set_leader(state, tablet, new)
            elif tablet["leader"] is None and node in tablet["replicas"]:
                if node not in tablet["isr"]:
                    if not _unclean(state, log):
                        continue
                    tablet["isr"] = [node]
                _set_leader(state, tablet, node)
            else:
                continue
            tablet["version"] += 1
            changed += 1
        return Result(ok=True, changed=True, tablets_changed=changed)


@dataclass(frozen=True, slots=True)
class FenceNode(Command):
    """``node``'s process ``incarnation`` is dead: it leaves every ISR it is not alone in, and
    its tablets fail over to an alive in-sync replica (any alive replica if unclean)."""

    op: ClassVar[str] = "fence_node"
    term: Count
    node: NodeId
    incarnation: Count

    def apply(self, state: State) -> Result:
        _check_term(state, self.term)
        node = self.node
        record = state["nodes"].get(node)
        if record is None:
            raise Rejected("unknown_node", f"no node {node!r}")
        if record["incarnation"] != self.incarnation:
            raise Rejected("stale_incarnation", f"{node} runs incarnation {record['incarnation']}")
        if not record["alive"]:
            return Result(ok=True, changed=False, tablets_changed=0)
        record["alive"] = False
        alive = _alive(state)
        changed = 0
        for (log, _), tablet in state["tablets"].items():
            if node not in tablet["replicas"]:
                continue
            touched = False
            if node in tablet["isr"] and len(tablet["isr"]) > 1:
                tablet["isr"] = [n for n in tablet["isr"] if n != node]
                touched = True
            if tablet["leader"] == node:
                new, isr = failover_leader(
                    tablet["replicas"], tablet["isr"], alive, node, _unclean(state, log)
                )
                tablet["isr"] = list(isr)
                _set_leader(state, tablet, new)
                touched = True
            if touched:
                tablet["version"] += 1
                changed += 1
        return Result(ok=True, changed=True, tablets_changed=changed)


@dataclass(frozen=True, slots=True)
class CreateLog(Command):
    """Create log ``name``: its tablets get ``assignments`` as replicas (preferred leader
    first) and start led by their first alive replica. Idempotent for the same arguments."""

    op: ClassVar[str] = "create_log"
    term: Count
    name: Text
    settings: Settings
    assignments: Assignments

    def apply(self, state: State) -> Result:
        _check_term(state, self.term)
        name, settings = self.name, dict(self.settings)
        if not _NAME.fullmatch(name):
            raise Rejected("invalid", "a log name is letters, digits, '.', '_' or '-' (≤ 200)")
        count, rf = settings["tablets"], settings["replication_factor"]
        if len(self.assignments) != count or count > MAX_TABLETS:
            raise Rejected("invalid", f"assignments must list the replicas of all {count} tablets")
        assignments = [_distinct(r, "replicas") for r in self.assignments]
        for replicas in assignments:
            if len(replicas) != rf:
                raise Rejected("invalid", f"every tablet needs exactly {rf} replicas")
            unknown = [n for n in replicas if n not in state["nodes"]]
            if unknown:
                raise Rejected("unknown_node", f"no node {unknown[0]!r}")
        if name in state["logs"]:
            current = (
                [state["tablets"][(name, i)]["replicas"] for i in range(count)]
                if (state["logs"][name] == settings)
                else None
            )
            if current == assignments:
                return Result(ok=True, changed=False)
            raise Rejected("already_exists", f"log {name!r} already exists")
        state["logs"][name] = settings
        state["log_seq"] += 1
        state["log_ids"][name] = state["log_seq"]
        alive = _alive(state)
        for index, replicas in enumerate(assignments):
            leader = next((n for n in replicas if alive(n)), None)
            state["tablets"][(name, index)] = {
                "replicas": replicas,
                "leader": leader,
                "leader_epoch": 0,
                "leader_incarnation": state["nodes"][leader]["incarnation"] if leader else 0,
                "isr": list(replicas),
                "version": 0,
            }
        return Result(ok=True, changed=True)


@dataclass(frozen=True, slots=True)
class DeleteLog(Command):
    """Delete log ``name`` with its tablets and committed offsets."""

    op: ClassVar[str] = "delete_log"
    term: Count
    name: Text

    def apply(self, state: State) -> Result:
        _check_term(state, self.term)
        settings = state["logs"].pop(self.name, None)
        if settings is None:
            raise Rejected("not_found", f"no log {self.name!r}")
        state["log_ids"].pop(self.name, None)
        for index in range(settings["tablets"]):
            state["tablets"].pop((self.name, index), None)
        for key in [k for k in state["offsets"] if k[1] == self.name]:
            del state["offsets"][key]
        return Result(ok=True, changed=True)


@dataclass(frozen=True, slots=True)
class AlterIsr(Command):
    """The tablet's ``leader`` at ``leader_epoch`` sets its ISR, compare-and-set on
    ``version``; a fenced node cannot join."""

    op: ClassVar[str] = "alter_isr"
    term: Count
    log: Text
    tablet: Count
    leader: NodeId
    leader_epoch: Count
    version: Count
    isr: NodeIds

    def apply(self, state: State) -> Result:
        _check_term(state, self.term)
        tablet = _tablet(state, self.log, self.tablet)
        isr = _distinct(self.isr, "isr")
        if self.leader_epoch != tablet["leader_epoch"] or self.leader != tablet["leader"]:
            raise Rejected(
                "stale_epoch",
                f"leader {self.leader} epoch {self.leader_epoch} is not the current leader "
                f"{tablet['leader']} epoch {tablet['leader_epoch']}",
            )
        if self.version != tablet["version"]:
            raise Rejected(
                "stale_version", f"version {self.version} is not the current {tablet['version']}"
            )
        if self.leader not in isr or not set(isr) <= set(tablet["replicas"]):
            raise Rejected("invalid", "the ISR must contain the leader and only replicas")
        alive = _alive(state)
        joining = [n for n in isr if n not in tablet["isr"] and not alive(n)]
        if joining:
            raise Rejected("ineligible_replica", f"{joining[0]} is fenced and cannot join the ISR")
        ordered = [n for n in tablet["replicas"] if n in isr]
        if ordered == tablet["isr"]:
            return Result(ok=True, changed=False)
        tablet["isr"] = ordered
        tablet["version"] += 1
        return Result(ok=True, changed=True)


@dataclass(frozen=True, slots=True)
class ElectLeader(Command):
    """Move the tablet's leadership to ``new_leader`` (an alive in-sync replica),
    compare-and-set on ``leader_epoch``."""

    op: ClassVar[str] = "elect_leader"
    term: Count
    log: Text
    tablet: Count
    leader_epoch: Count
    new_leader: NodeId

    def apply(self, state: State) -> Result:
        _check_term(state, self.term)
        tablet = _tablet(state, self.log, self.tablet)
        if self.leader_epoch != tablet["leader_epoch"]:
            raise Rejected(
                "stale_epoch",
                f"epoch {self.leader_epoch} is not the current {tablet['leader_epoch']}",
            )
        if self.new_leader not in tablet["isr"] or not _alive(state)(self.new_leader):
            raise Rejected(
                "ineligible_replica", f"{self.new_leader} is not an alive in-sync replica"
            )
        if self.new_leader == tablet["leader"]:
            return Result(ok=True, changed=False)
        _set_leader(state, tablet, self.new_leader)
        tablet["version"] += 1
        return Result(ok=True, changed=True)


@dataclass(frozen=True, slots=True)
class CommitOffsets(Command):
    """Consumer group ``group`` commits ``offsets``: all of them, or none if a tablet is
    unknown. Not a controller command: it carries no term."""

    op: ClassVar[str] = "commit_offsets"
    group: Text
    offsets: Offsets

    def apply(self, state: State) -> Result:
        for log, index, _ in self.offsets:
            if (log, index) not in state["tablets"]:
                raise Rejected("not_found", f"no tablet {index} of log {log!r}")
        offsets = state["offsets"]
        changed = False
        for log, index, offset in self.offsets:
            key = (self.group, log, index)
            changed = changed or offsets.get(key) != offset
            offsets[key] = offset
        return Result(ok=True, changed=changed)


COMMANDS: tuple[type[Command], ...] = (
    ClaimController,
    RegisterNode,
    FenceNode,
    CreateLog,
    DeleteLog,
    AlterIsr,
    ElectLeader,
    CommitOffsets,
)
"""Every command the map knows (the codec decodes exactly these)."""
