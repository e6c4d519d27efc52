"""The metadata map's pure logic: stale and garbage commands are recorded no-ops, failover is
deterministic and follows the ISR, and every command is idempotent or compare-and-set."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from replication import model
from replication.command_base import Command, Result, State
from replication.command_codec import COMMANDS_BY_OP, encode
from replication.commands import (
    AlterIsr,
    ClaimController,
    CommitOffsets,
    CreateLog,
    DeleteLog,
    ElectLeader,
    FenceNode,
    RegisterNode,
)

NODES = {"n1": "h:1", "n2": "h:2", "n3": "h:3"}
SETTINGS = {
    "tablets": 2,
    "replication_factor": 3,
    "min_insync_replicas": 2,
    "fsync": "always",
    "unclean_leader_election": False,
}


def ok(state: State, cmd: Command) -> Result:
    """Apply ``cmd`` as a voter does (its journal entry) and expect success."""
    result = model.apply_entry(state, encode(cmd))
    assert result.ok, result
    return result


def rejected(state: State, cmd: Command, code: str) -> None:
    before = copy.deepcopy(state)
    result = model.apply_entry(state, encode(cmd))
    assert result == Result(ok=False, error=code, message=result.message)
    assert state == before, "a rejected command must leave the state unchanged"


def cluster(term: int = 5, unclean: bool = False) -> State:
    """Three registered nodes, controller n1 at ``term``, log ``x``: t0 led by n1, t1 by n2."""
    state = model.initial_state("c", NODES)
    ok(state, ClaimController("n1", term))
    for i, node in enumerate(NODES, start=1):
        ok(state, RegisterNode(term, node, NODES[node], 100 + i))
    log_settings = {**SETTINGS, "unclean_leader_election": unclean}
    ok(state, CreateLog(term, "x", log_settings, (("n1", "n2", "n3"), ("n2", "n3", "n1"))))
    return state


def tablet(state: State, index: int = 0) -> dict[str, Any]:
    t: dict[str, Any] = state["tablets"][("x", index)]
    return t


def test_initial_state_lists_config_nodes_dead() -> None:
    view = model.to_view(model.initial_state("c", NODES))
    assert set(view.nodes) == set(NODES)
    assert not any(n.alive for n in view.nodes.values())
    assert view.controller is None and view.controller_term == 0


def test_claim_controller_needs_a_newer_term() -> None:
    state = model.initial_state("c", NODES)
    assert ok(state, ClaimController("n1", 3)).changed
    assert not ok(state, ClaimController("n1", 3)).changed  # idempotent retry
    rejected(state, ClaimController("n2", 3), "stale_term")
    rejected(state, ClaimController("n2", 2), "stale_term")
    ok(state, ClaimController("n2", 4))
    assert (state["controller"], state["controller_term"]) == ("n2", 4)


def test_commands_from_other_terms_are_no_ops() -> None:
    state = cluster(term=5)
    ok(state, ClaimController("n2", 6))
    rejected(state, FenceNode(5, "n3", 103), "stale_term")
    rejected(state, DeleteLog(5, "x"), "stale_term")
    rejected(state, CreateLog(7, "y", SETTINGS, (("n1",), ("n2",))), "unclaimed_term")
    ok(state, FenceNode(6, "n3", 103))


@pytest.mark.parametrize(
    "cmd",
    [
        None,
        3,
        "claim",
        [],
        {},
        {"op": "fence_node"},
        {"op": "nope", "v": 1},
        {"op": "fence_node", "v": 2, "term": 5, "node": "n1", "incarnation": 101},
        {"op": "fence_node", "v": 1, "term": "5", "node": "n1", "incarnation": 101},
        {"op": "fence_node", "v": 1, "term": True, "node": "n1", "incarnation": 101},
        {
            "op": "alter_isr",
            "v": 1,
            "term": 5,
            "log": "x",
            "tablet": 0,
            "leader": "n1",
            "leader_epoch": 0,
            "version": 0,
            "isr": "n1",
        },
        {"op": "create_log", "v": 1, "term": 5, "name": "y", "settings": [], "assignments": []},
        {
            "op": "create_log",
            "v": 1,
            "term": 5,
            "name": "../etc",
            "settings": SETTINGS,
            "assignments": [["n1"]],
        },
        {"op": "commit_offsets", "v": 1, "group": "g", "offsets": [["x", 0]]},
        {"op": "commit_offsets", "v": 1, "group": "g", "offsets": [[1, 2, 3]]},
        {"op": {"unhashable": 1}, "v": 1},
    ],
)
def test_garbage_commands_are_recorded_no_ops(cmd: object) -> None:
    state = cluster()
    before = copy.deepcopy(state)
    result = model.apply_entry(state, cmd)
    assert result.ok is False and isinstance(result.error, str)
    assert state == before


_SCALARS = (
    st.none() | st.booleans() | st.integers(-2, 6) | st.sampled_from(["", "n1", "n9", "x", "g"])
)
_VALUES = (
    _SCALARS
    | st.lists(_SCALARS, max_size=4)
    | st.lists(st.lists(_SCALARS, max_size=4), max_size=3)
    | st.dictionaries(
        st.sampled_from(["tablets", "replication_factor", "fsync"]), _SCALARS, max_size=3
    )
)
_FIELDS = [
    "term",
    "node",
    "log",
    "tablet",
    "isr",
    "leader",
    "leader_epoch",
    "version",
    "incarnation",
    "name",
    "settings",
    "assignments",
    "offsets",
    "group",
    "address",
    "new_leader",
]


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    op=st.sampled_from([*COMMANDS_BY_OP, "nope"]),
    v=st.sampled_from([1, 1, 1, 2, None]),
    fields=st.dictionaries(st.sampled_from(_FIELDS), _VALUES, max_size=8),
)
def test_apply_never_raises_and_state_stays_picklable(
    op: str, v: int | None, fields: dict[str, Any]
) -> None:
    state = cluster()
    cmd = {"op": op, "v": v, **fields}
    result = model.apply_entry(state, cmd)
    assert isinstance(result.ok, bool)
    model.to_view(state)
    pickle.loads(pickle.dumps(state))


def test_internal_errors_are_caught() -> None:
    state: State = {}  # a broken state makes the handler fail with KeyError
    result = model.apply_entry(state, encode(ClaimController("n1", 1)))
    assert result.ok is False and result.error == "internal"


def test_create_log_places_leader_first_and_is_idempotent() -> None:
    state = cluster()
    t0 = tablet(state, 0)
    assert t0 == {
        "replicas": ["n1", "n2", "n3"],
        "leader": "n1",
        "leader_epoch": 0,
        "leader_incarnation": 101,
        "isr": ["n1", "n2", "n3"],
        "version": 0,
    }
    again = CreateLog(5, "x", SETTINGS, (("n1", "n2", "n3"), ("n2", "n3", "n1")))
    assert ok(state, again) == Result(ok=True, changed=False)
    rejected(
        state,
        CreateLog(5, "x", SETTINGS, (("n3", "n2", "n1"), ("n2", "n3", "n1"))),
        "already_exists",
    )
    rejected(
        state,
        CreateLog(5, "x", {**SETTINGS, "fsync": "never"}, (("n1", "n2", "n3"), ("n2", "n3", "n1"))),
        "already_exists",
    )


@pytest.mark.parametrize(
    ("assignments", "code"),
    [
        ([["n1", "n2", "n9"], ["n1", "n2", "n3"]], "unknown_node"),
        ([["n1", "n1", "n2"], ["n1", "n2", "n3"]], "invalid"),
        ([["n1", "n2"], ["n1", "n2", "n3"]], "invalid"),
        ([["n1", "n2", "n3"]], "invalid"),
    ],
)
def test_create_log_validates_assignments(assignments: list[list[str]], code: str) -> None:
    state = cluster()
    rejected(state, CreateLog(5, "y", SETTINGS, tuple(map(tuple, assignments))), code)


def test_create_log_with_a_dead_first_replica_is_led_by_a_live_one() -> None:
    state = cluster()
    ok(state, FenceNode(5, "n1", 101))
    ok(state, CreateLog(5, "y", {**SETTINGS, "tablets": 1}, (("n1", "n2", "n3"),)))
    assert state["tablets"][("y", 0)]["leader"] == "n2"


def test_delete_log_removes_tablets_and_offsets() -> None:
    state = cluster()
    ok(state, CommitOffsets("g", (("x", 1, 42),)))
    first_id = model.to_view(state).logs["x"].log_id
    ok(state, DeleteLog(5, "x"))
    assert state["logs"] == {} and state["tablets"] == {} and state["offsets"] == {}
    rejected(state, DeleteLog(5, "x"), "not_found")
    ok(state, CreateLog(5, "x", SETTINGS, (("n1", "n2", "n3"), ("n2", "n3", "n1"))))
    assert model.to_view(state).logs["x"].log_id not in ("", first_id), "ids are never reused"


def test_fence_moves_leadership_to_first_alive_isr_member_and_shrinks_isr() -> None:
    state = cluster()
    result = ok(state, FenceNode(5, "n1", 101))
    assert result.tablets_changed == 2
    t0, t1 = tablet(state, 0), tablet(state, 1)
    assert (t0["leader"], t0["leader_epoch"], t0["isr"], t0["version"]) == (
        "n2",
        1,
        ["n2", "n3"],
        1,
    )
    assert t0["leader_incarnation"] == 102
    # n1 only followed t1: it leaves the ISR, the leader and epoch stay
    assert (t1["leader"], t1["leader_epoch"], t1["isr"], t1["version"]) == (
        "n2",
        0,
        ["n2", "n3"],
        1,
    )
    assert not state["nodes"]["n1"]["alive"]
    assert not ok(state, FenceNode(5, "n1", 101)).changed  # idempotent


def test_fence_never_empties_the_isr_and_leaves_the_tablet_leaderless() -> None:
    state = cluster()
    ok(state, FenceNode(5, "n2", 102))
    ok(state, FenceNode(5, "n3", 103))
    assert tablet(state, 0)["isr"] == ["n1"]
    ok(state, FenceNode(5, "n1", 101))
    t0 = tablet(state, 0)
    assert (t0["leader"], t0["isr"], t0["leader_epoch"]) == (None, ["n1"], 1)
    # t1 lost its leader n2 first (to n3), then n3 (to n1), then n1 (to nobody)
    assert tablet(state, 1)["leader"] is None and tablet(state, 1)["isr"] == ["n1"]


def test_fence_with_unclean_election_picks_any_alive_replica() -> None:
    state = cluster(unclean=True)
    ok(state, AlterIsr(5, "x", 0, "n1", 0, 0, ("n1",)))
    ok(state, FenceNode(5, "n1", 101))
    t0 = tablet(state, 0)
    assert (t0["leader"], t0["isr"]) == ("n2", ["n2"])


def test_fence_needs_the_current_incarnation() -> None:
    state = cluster()
    rejected(state, FenceNode(5, "n1", 100), "stale_incarnation")
    rejected(state, FenceNode(5, "n9", 1), "unknown_node")


def test_register_of_a_new_incarnation_reelects_its_tablets() -> None:
    state = cluster()
    result = ok(state, RegisterNode(5, "n1", "h:1", 201))
    assert result.tablets_changed == 1
    t0 = tablet(state, 0)
    assert (t0["leader"], t0["leader_epoch"], t0["leader_incarnation"], t0["version"]) == (
        "n2",
        1,
        102,
        1,
    )
    rejected(state, RegisterNode(5, "n1", "h:1", 150), "stale_incarnation")
    assert not ok(state, RegisterNode(5, "n1", "h:1", 201)).changed


def test_register_of_a_new_incarnation_keeps_it_leader_when_alone() -> None:
    state = cluster()
    ok(state, AlterIsr(5, "x", 0, "n1", 0, 0, ("n1",)))
    ok(state, RegisterNode(5, "n1", "h:1", 201))
    t0 = tablet(state, 0)
    assert (t0["leader"], t0["leader_epoch"], t0["leader_incarnation"]) == ("n1", 1, 201)


def test_returning_isr_member_leads_its_leaderless_tablets() -> None:
    state = cluster()
    for node, inc in (("n2", 102), ("n3", 103), ("n1", 101)):
        ok(state, FenceNode(5, node, inc))
    ok(state, RegisterNode(5, "n2", "h:2", 302))  # not in the ISR: stays leaderless
    assert tablet(state, 0)["leader"] is None
    ok(state, RegisterNode(5, "n1", "h:1", 301))
    t0 = tablet(state, 0)
    assert (t0["leader"], t0["leader_epoch"], t0["leader_incarnation"]) == ("n1", 2, 301)


def test_alter_isr_is_compare_and_set() -> None:
    state = cluster()
    rejected(state, AlterIsr(5, "x", 0, "n1", 1, 0, ("n1",)), "stale_epoch")
    rejected(state, AlterIsr(5, "x", 0, "n2", 0, 0, ("n2",)), "stale_epoch")
    rejected(state, AlterIsr(5, "x", 0, "n1", 0, 3, ("n1",)), "stale_version")
    rejected(state, AlterIsr(5, "x", 0, "n1", 0, 0, ("n2",)), "invalid")
    rejected(state, AlterIsr(5, "x", 0, "n1", 0, 0, ("n1", "n9")), "invalid")
    rejected(state, AlterIsr(5, "x", 7, "n1", 0, 0, ("n1",)), "not_found")
    ok(state, AlterIsr(5, "x", 0, "n1", 0, 0, ("n3", "n1")))
    assert (tablet(state)["isr"], tablet(state)["version"]) == (["n1", "n3"], 1)
    rejected(state, AlterIsr(5, "x", 0, "n1", 0, 0, ("n1",)), "stale_version")


def test_alter_isr_cannot_add_a_fenced_node() -> None:
    state = cluster()
    ok(state, FenceNode(5, "n3", 103))
    version = tablet(state)["version"]
    rejected(
        state,
        AlterIsr(5, "x", 0, "n1", 0, version, ("n1", "n2", "n3")),
        "ineligible_replica",
    )


def test_deposed_leader_cannot_change_the_isr() -> None:
    state = cluster()
    ok(state, FenceNode(5, "n1", 101))  # n2 now leads t0 at epoch 1
    rejected(state, AlterIsr(5, "x", 0, "n1", 0, 1, ("n1",)), "stale_epoch")


def test_elect_leader_is_compare_and_set_on_epoch() -> None:
    state = cluster()
    rejected(state, ElectLeader(5, "x", 0, 1, "n2"), "stale_epoch")
    ok(state, FenceNode(5, "n3", 103))
    rejected(state, ElectLeader(5, "x", 0, 0, "n3"), "ineligible_replica")
    ok(state, ElectLeader(5, "x", 0, 0, "n2"))
    t0 = tablet(state)
    assert (t0["leader"], t0["leader_epoch"], t0["leader_incarnation"]) == ("n2", 1, 102)
    rejected(state, ElectLeader(5, "x", 0, 0, "n1"), "stale_epoch")


def test_commit_offsets_is_all_or_nothing() -> None:
    state = cluster()
    ok(state, CommitOffsets("g", (("x", 0, 5), ("x", 1, 7))))
    rejected(state, CommitOffsets("g", (("x", 0, 9), ("x", 2, 1))), "not_found")
    assert state["offsets"] == {("g", "x", 0): 5, ("g", "x", 1): 7}


def test_replaying_the_same_commands_gives_the_same_state() -> None:
    commands = [
        ClaimController("n1", 1),
        *(RegisterNode(1, n, a, 7) for n, a in NODES.items()),
        CreateLog(1, "x", SETTINGS, (("n1", "n2", "n3"), ("n2", "n3", "n1"))),
        FenceNode(1, "n2", 7),
        ClaimController("n3", 2),
        RegisterNode(2, "n2", "h:2", 8),
        AlterIsr(1, "x", 0, "n1", 0, 1, ("n1",)),  # stale term: no-op
    ]
    a, b = model.initial_state("c", NODES), model.initial_state("c", NODES)
    results_a = [model.apply_entry(a, encode(c)) for c in commands]
    results_b = [model.apply_entry(b, copy.deepcopy(encode(c))) for c in commands]
    assert a == b and results_a == results_b
    assert model.to_view(a, 9) == model.to_view(b, 9)
