"""The metadata map's commands: validation and effect of each, on the plain-dict state.

Every handler validates the whole command before it changes anything, so a rejected command
leaves the state untouched; a rejection is raised as :class:`Rejected` and recorded by
:func:`replication.model.apply` as a no-op result. Handlers are deterministic (no clocks, I/O or
randomness) because every voter replays them and must reach the same state. Not thread-safe:
only the thread that applies Raft entries calls them.

State layout (builtins only, so snapshots and journal entries pickle safely)::

    controller_term: int            controller: str | None
    nodes:   {id: {"address": str, "alive": bool, "incarnation": int}}
    logs:    {name: settings dict}  (LogSettings.to_dict())
    log_ids: {name: int}            log_seq: int (last log id handed out; ids never reused)
    tablets: {(log, index): {"replicas": [id], "leader": id | None, "leader_epoch": int,
                             "leader_incarnation": int, "isr": [id], "version": int}}
    offsets: {(group, log, index): offset}

Invariant: every change to a tablet bumps its ``version``; every change of its leader bumps
``leader_epoch`` as well.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from replication.placement import choose_leader, choose_unclean_leader

State = dict[str, Any]
Result = dict[str, Any]

MAX_TABLETS = 10_000
MAX_REPLICAS = 15
MAX_OFFSETS_PER_COMMIT = 10_000
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


class Rejected(Exception):
    """A command the map refuses; becomes ``{"ok": False, "error": code, "message": ...}``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# ----------------------------------------------------------------------------- field checks


def _str(cmd: dict[str, Any], key: str, limit: int = 256) -> str:
    value = cmd.get(key)
    if not isinstance(value, str) or not value or len(value) > limit:
        raise Rejected("bad_command", f"{key} must be a non-empty string of at most {limit}")
    return value


def _int(cmd: dict[str, Any], key: str) -> int:
    value = cmd.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise Rejected("bad_command", f"{key} must be a non-negative integer")
    return value


def _str_list(value: object, what: str) -> list[str]:
    if not isinstance(value, list | tuple) or not value or len(value) > MAX_REPLICAS:
        raise Rejected("bad_command", f"{what} must be a non-empty list of node ids")
    if not all(isinstance(v, str) and v for v in value):
        raise Rejected("bad_command", f"{what} must hold node ids (strings)")
    if len(set(value)) != len(value):
        raise Rejected("invalid", f"{what} names a node twice")
    return list(value)


def _check_term(state: State, cmd: dict[str, Any]) -> None:
    """Controller commands carry the term of the claim they were issued under; only the
    current claim's term is accepted, so a deposed controller's queued commands are no-ops."""
    term = _int(cmd, "term")
    current = state["controller_term"]
    if term < current:
        raise Rejected("stale_term", f"term {term} is older than the controller term {current}")
    if term > current:
        raise Rejected("unclaimed_term", f"term {term} has not been claimed (current {current})")


def _tablet(state: State, cmd: dict[str, Any]) -> tuple[tuple[str, int], dict[str, Any]]:
    key = (_str(cmd, "log"), _int(cmd, "tablet"))
    tablet = state["tablets"].get(key)
    if tablet is None:
        raise Rejected("not_found", f"no tablet {key[1]} of log {key[0]!r}")
    return key, tablet


def _alive(state: State) -> Callable[[str], bool]:
    nodes = state["nodes"]
    return lambda node: node in nodes and bool(nodes[node]["alive"])


def _unclean(state: State, log: str) -> bool:
    return bool(state["logs"].get(log, {}).get("unclean_leader_election", False))


def _set_leader(state: State, tablet: dict[str, Any], leader: str | None) -> None:
    tablet["leader"] = leader
    tablet["leader_epoch"] += 1
    tablet["leader_incarnation"] = state["nodes"][leader]["incarnation"] if leader else 0


# ----------------------------------------------------------------------------- handlers


def claim_controller(state: State, cmd: dict[str, Any]) -> Result:
    node, term = _str(cmd, "node"), _int(cmd, "term")
    current, holder = state["controller_term"], state["controller"]
    if term < current or (term == current and holder != node):
        raise Rejected("stale_term", f"term {term} is not newer than {current} (held by {holder})")
    if term == current:
        return {"ok": True, "changed": False}
    state["controller_term"], state["controller"] = term, node
    return {"ok": True, "changed": True}


def register_node(state: State, cmd: dict[str, Any]) -> Result:
    _check_term(state, cmd)
    node, address = _str(cmd, "node", 64), _str(cmd, "address")
    incarnation = _int(cmd, "incarnation")
    old = state["nodes"].get(node)
    if old is not None and incarnation < old["incarnation"]:
        raise Rejected("stale_incarnation", f"{node} already runs incarnation {old['incarnation']}")
    restarted = old is None or incarnation != old["incarnation"]
    if not restarted and old is not None and old["alive"] and old["address"] == address:
        return {"ok": True, "changed": False, "tablets_changed": 0}
    state["nodes"][node] = {"address": address, "alive": True, "incarnation": incarnation}
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
    return {"ok": True, "changed": True, "tablets_changed": changed}


def fence_node(state: State, cmd: dict[str, Any]) -> Result:
    _check_term(state, cmd)
    node, incarnation = _str(cmd, "node", 64), _int(cmd, "incarnation")
    record = state["nodes"].get(node)
    if record is None:
        raise Rejected("unknown_node", f"no node {node!r}")
    if record["incarnation"] != incarnation:
        raise Rejected("stale_incarnation", f"{node} runs incarnation {record['incarnation']}")
    if not record["alive"]:
        return {"ok": True, "changed": False, "tablets_changed": 0}
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
            new = choose_leader(tablet["replicas"], tablet["isr"], alive, exclude=node)
            if new is None and _unclean(state, log):
                new = choose_unclean_leader(tablet["replicas"], alive, exclude=node)
                if new is not None and new not in tablet["isr"]:
                    tablet["isr"] = [new]
            _set_leader(state, tablet, new)
            touched = True
        if touched:
            tablet["version"] += 1
            changed += 1
    return {"ok": True, "changed": True, "tablets_changed": changed}


def _settings(cmd: dict[str, Any]) -> dict[str, Any]:
    settings = cmd.get("settings")
    if not isinstance(settings, dict) or len(settings) > 64:
        raise Rejected("bad_command", "settings must be a mapping")
    for key, value in settings.items():
        if not isinstance(key, str) or not isinstance(value, str | int | float | bool | None):
            raise Rejected("bad_command", "settings must map names to scalars")
    for key in ("tablets", "replication_factor"):
        value = settings.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise Rejected("bad_command", f"settings.{key} must be a positive integer")
    return dict(settings)


def create_log(state: State, cmd: dict[str, Any]) -> Result:
    _check_term(state, cmd)
    name = _str(cmd, "name")
    if not _NAME.fullmatch(name):
        raise Rejected("invalid", "a log name is letters, digits, '.', '_' or '-' (≤ 200)")
    settings = _settings(cmd)
    raw = cmd.get("assignments")
    count, rf = settings["tablets"], settings["replication_factor"]
    if not isinstance(raw, list) or len(raw) != count or count > MAX_TABLETS:
        raise Rejected("invalid", f"assignments must list the replicas of all {count} tablets")
    assignments = [_str_list(r, "replicas") for r in raw]
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
            return {"ok": True, "created": False}
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
    return {"ok": True, "created": True, "log_id": state["log_seq"]}


def delete_log(state: State, cmd: dict[str, Any]) -> Result:
    _check_term(state, cmd)
    name = _str(cmd, "name")
    settings = state["logs"].pop(name, None)
    if settings is None:
        raise Rejected("not_found", f"no log {name!r}")
    state["log_ids"].pop(name, None)
    for index in range(settings["tablets"]):
        state["tablets"].pop((name, index), None)
    for key in [k for k in state["offsets"] if k[1] == name]:
        del state["offsets"][key]
    return {"ok": True}


def alter_isr(state: State, cmd: dict[str, Any]) -> Result:
    _check_term(state, cmd)
    _, tablet = _tablet(state, cmd)
    leader, epoch = _str(cmd, "leader", 64), _int(cmd, "leader_epoch")
    version = _int(cmd, "version")
    isr = _str_list(cmd.get("isr"), "isr")
    if epoch != tablet["leader_epoch"] or leader != tablet["leader"]:
        raise Rejected(
            "stale_epoch",
            f"leader {leader} epoch {epoch} is not the current leader "
            f"{tablet['leader']} epoch {tablet['leader_epoch']}",
        )
    if version != tablet["version"]:
        raise Rejected("stale_version", f"version {version} is not the current {tablet['version']}")
    if leader not in isr or not set(isr) <= set(tablet["replicas"]):
        raise Rejected("invalid", "the ISR must contain the leader and only replicas")
    alive = _alive(state)
    joining = [n for n in isr if n not in tablet["isr"] and not alive(n)]
    if joining:
        raise Rejected("ineligible_replica", f"{joining[0]} is fenced and cannot join the ISR")
    ordered = [n for n in tablet["replicas"] if n in isr]
    if ordered == tablet["isr"]:
        return {"ok": True, "changed": False}
    tablet["isr"] = ordered
    tablet["version"] += 1
    return {"ok": True, "changed": True}


def elect_leader(state: State, cmd: dict[str, Any]) -> Result:
    _check_term(state, cmd)
    _, tablet = _tablet(state, cmd)
    epoch, new_leader = _int(cmd, "leader_epoch"), _str(cmd, "new_leader", 64)
    if epoch != tablet["leader_epoch"]:
        raise Rejected("stale_epoch", f"epoch {epoch} is not the current {tablet['leader_epoch']}")
    if new_leader not in tablet["isr"] or not _alive(state)(new_leader):
        raise Rejected("ineligible_replica", f"{new_leader} is not an alive in-sync replica")
    if new_leader == tablet["leader"]:
        return {"ok": True, "changed": False}
    _set_leader(state, tablet, new_leader)
    tablet["version"] += 1
    return {"ok": True, "changed": True}


def commit_offsets(state: State, cmd: dict[str, Any]) -> Result:
    group = _str(cmd, "group")
    raw = cmd.get("offsets")
    if not isinstance(raw, list) or len(raw) > MAX_OFFSETS_PER_COMMIT:
        raise Rejected("bad_command", "offsets must be a list of [log, tablet, offset]")
    updates: list[tuple[tuple[str, str, int], int]] = []
    for item in raw:
        if not isinstance(item, list | tuple) or len(item) != 3:
            raise Rejected("bad_command", "each offset is [log, tablet, offset]")
        log, index, offset = item
        entry = {"log": log, "tablet": index, "offset": offset}
        _str(entry, "log"), _int(entry, "tablet"), _int(entry, "offset")
        if (log, index) not in state["tablets"]:
            raise Rejected("not_found", f"no tablet {index} of log {log!r}")
        updates.append(((group, log, index), offset))
    for key, offset in updates:
        state["offsets"][key] = offset
    return {"ok": True}


HANDLERS: dict[str, Callable[[State, dict[str, Any]], Result]] = {
    "claim_controller": claim_controller,
    "register_node": register_node,
    "fence_node": fence_node,
    "create_log": create_log,
    "delete_log": delete_log,
    "alter_isr": alter_isr,
    "elect_leader": elect_leader,
    "commit_offsets": commit_offsets,
}
