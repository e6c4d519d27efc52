"""The journal encoding of metadata commands: journals written before commands were typed still
decode, every command round-trips through builtins only, and entries of other versions or
shapes are rejected (recorded no-ops), never exceptions."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, ClassVar

import pytest

from replication import model
from replication.command_base import Command, Count, Rejected, Result, State, Text
from replication.command_codec import COMMANDS_BY_OP, ENCODING_VERSION, decode, encode
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
from replication.raft_state import decode_snapshot, encode_snapshot
from tests.replication.test_model_apply import SETTINGS, cluster

# The exact dicts the command builders of the untyped model (replication/model.py up to ad202a4)
# put into the Raft journal, and the typed command each must decode to.
LEGACY_ENTRIES: list[tuple[dict[str, Any], Command]] = [
    (
        {"op": "claim_controller", "v": 1, "node": "n1", "term": 3},
        ClaimController("n1", 3),
    ),
    (
        {
            "op": "register_node",
            "v": 1,
            "term": 3,
            "node": "n2",
            "address": "h:2",
            "incarnation": 7,
        },
        RegisterNode(3, "n2", "h:2", 7),
    ),
    (
        {"op": "fence_node", "v": 1, "term": 3, "node": "n2", "incarnation": 7},
        FenceNode(3, "n2", 7),
    ),
    (
        {
            "op": "create_log",
            "v": 1,
            "term": 3,
            "name": "x",
            "settings": dict(SETTINGS),
            "assignments": [["n1", "n2", "n3"], ["n2", "n3", "n1"]],
        },
        CreateLog(3, "x", dict(SETTINGS), (("n1", "n2", "n3"), ("n2", "n3", "n1"))),
    ),
    (
        {"op": "delete_log", "v": 1, "term": 3, "name": "x"},
        DeleteLog(3, "x"),
    ),
    (
        {
            "op": "alter_isr",
            "v": 1,
            "term": 3,
            "log": "x",
            "tablet": 1,
            "leader": "n2",
            "leader_epoch": 4,
            "version": 9,
            "isr": ["n2", "n3"],
        },
        AlterIsr(3, "x", 1, "n2", 4, 9, ("n2", "n3")),
    ),
    (
        {
            "op": "elect_leader",
            "v": 1,
            "term": 3,
            "log": "x",
            "tablet": 0,
            "leader_epoch": 2,
            "new_leader": "n3",
        },
        ElectLeader(3, "x", 0, 2, "n3"),
    ),
    (
        {"op": "commit_offsets", "v": 1, "group": "g", "offsets": [["x", 0, 5], ["x", 1, 7]]},
        CommitOffsets("g", (("x", 0, 5), ("x", 1, 7))),
    ),
]


def _id(case: tuple[dict[str, Any], Command]) -> str:
    return str(case[0]["op"])


def test_every_command_has_a_legacy_case() -> None:
    assert {entry["op"] for entry, _ in LEGACY_ENTRIES} == set(COMMANDS_BY_OP)


@pytest.mark.parametrize(("entry", "command"), LEGACY_ENTRIES, ids=map(_id, LEGACY_ENTRIES))
def test_journals_of_the_untyped_model_decode(entry: dict[str, Any], command: Command) -> None:
    assert decode(copy.deepcopy(entry)) == command


@pytest.mark.parametrize(("entry", "command"), LEGACY_ENTRIES, ids=map(_id, LEGACY_ENTRIES))
def test_encoding_writes_the_same_shape(entry: dict[str, Any], command: Command) -> None:
    """New journals stay readable by the code that wrote the old ones (a rolling upgrade)."""
    assert encode(command) == entry
    assert decode(encode(command)) == command


@pytest.mark.parametrize(("entry", "command"), LEGACY_ENTRIES, ids=map(_id, LEGACY_ENTRIES))
def test_entries_hold_builtins_only(entry: dict[str, Any], command: Command) -> None:
    """Snapshots are read by an unpickler that refuses every class: an entry must pass it."""
    snapshot = encode_snapshot({"state": {"entry": encode(command)}})
    assert decode_snapshot(snapshot)["state"]["entry"] == entry


@pytest.mark.parametrize(
    ("entry", "code"),
    [
        pytest.param(None, "bad_command", id="not-a-mapping"),
        pytest.param([("op", "fence_node")], "bad_command", id="a-list"),
        pytest.param(
            {"op": "delete_log", "term": 5, "name": "x"}, "unsupported_version", id="no-v"
        ),
        pytest.param(
            {"op": "delete_log", "v": 0, "term": 5, "name": "x"}, "unsupported_version", id="v0"
        ),
        pytest.param(
            {"op": "delete_log", "v": ENCODING_VERSION + 1, "term": 5, "name": "x"},
            "unsupported_version",
            id="future-version",
        ),
        pytest.param(
            {"op": "delete_log", "v": "1", "term": 5, "name": "x"},
            "unsupported_version",
            id="v-str",
        ),
        pytest.param(
            {"op": "delete_log", "v": True, "term": 5, "name": "x"},
            "unsupported_version",
            id="v-bool",
        ),
        pytest.param({"op": "compact_map", "v": 1}, "unknown_op", id="unknown-op"),
        pytest.param({"v": 1, "term": 5}, "unknown_op", id="no-op"),
        pytest.param({"op": "delete_log", "v": 1, "term": 5}, "bad_command", id="missing-field"),
        pytest.param(
            {"op": "delete_log", "v": 1, "term": -1, "name": "x"}, "bad_command", id="negative"
        ),
        pytest.param(
            {"op": "fence_node", "v": 1, "term": 5, "node": "n" * 65, "incarnation": 1},
            "bad_command",
            id="long-node-id",
        ),
        pytest.param(
            {"op": "commit_offsets", "v": 1, "group": "g", "offsets": [["x", 0, "5"]]},
            "bad_command",
            id="offset-str",
        ),
    ],
)
def test_entries_that_cannot_be_applied_are_rejected(entry: object, code: str) -> None:
    with pytest.raises(Rejected) as info:
        decode(entry)
    assert info.value.code == code
    state = cluster()
    before = copy.deepcopy(state)
    result = model.apply_entry(state, entry)
    assert result == Result(ok=False, error=code, message=info.value.message)
    assert state == before


def test_unknown_keys_are_ignored() -> None:
    entry = {"op": "delete_log", "v": 1, "term": 5, "name": "x", "reason": "later field"}
    assert decode(entry) == DeleteLog(5, "x")


@dataclasses.dataclass(frozen=True, slots=True)
class _Rename(Command):
    """A command as a later version might add it: ``force`` came after the first release."""

    op: ClassVar[str] = "rename_log"
    term: Count
    name: Text
    new_name: Text
    force: Count = 0

    def apply(self, state: State) -> Result:
        return Result(ok=True)


@pytest.mark.parametrize(
    ("extra", "force"),
    [pytest.param({}, 0, id="written-before-the-field"), pytest.param({"force": 2}, 2, id="after")],
)
def test_a_field_added_later_decodes_with_its_default(
    monkeypatch: pytest.MonkeyPatch, extra: dict[str, Any], force: int
) -> None:
    monkeypatch.setitem(COMMANDS_BY_OP, _Rename.op, _Rename)
    entry = {"op": "rename_log", "v": 1, "term": 5, "name": "x", "new_name": "y", **extra}
    assert decode(entry) == _Rename(5, "x", "y", force)
    assert encode(_Rename(5, "x", "y", force)) == {**entry, "force": force}


@dataclasses.dataclass(frozen=True, slots=True)
class _Untyped(Command):
    op: ClassVar[str] = "untyped"
    term: int

    def apply(self, state: State) -> Result:
        return Result(ok=True)


def test_a_command_field_needs_a_checked_type() -> None:
    with pytest.raises(TypeError, match="Annotated"):
        encode(_Untyped(1))
