"""The immutable ClusterView and its helpers."""

from __future__ import annotations

import dataclasses

import pytest

from replication import model
from replication.command_codec import encode
from replication.commands import FenceNode
from tests.replication.test_model_apply import cluster


def test_view_reflects_the_state_and_is_read_only() -> None:
    state = cluster()
    view = model.to_view(state, applied_index=17)
    assert view.applied_index == 17 and view.controller == "n1" and view.controller_term == 5
    assert view.nodes["n2"] == model.NodeInfo("n2", "h:2", True, 102)
    t1 = view.tablet("x", 1)
    assert t1 is not None
    assert (t1.replicas, t1.leader, t1.isr, t1.id) == (
        ("n2", "n3", "n1"),
        "n2",
        ("n2", "n3", "n1"),
        model.TabletId("x", 1),
    )
    assert view.logs["x"].tablet_count == 2 and view.logs["x"].settings["fsync"] == "always"
    with pytest.raises(TypeError):
        view.logs["x"].settings["fsync"] = "never"  # type: ignore[index]
    with pytest.raises(TypeError):
        view.tablets[model.TabletId("x", 5)] = t1  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        view.controller = "n2"  # type: ignore[misc]
    # later changes of the state do not leak into an existing view
    state["logs"]["x"]["fsync"] = "never"
    state["tablets"][("x", 1)]["isr"].append("zz")
    assert view.logs["x"].settings["fsync"] == "always"
    assert view.tablet("x", 1) == t1 and t1.isr == ("n2", "n3", "n1")


def test_view_helpers() -> None:
    state = cluster()
    model.apply_entry(state, encode(FenceNode(5, "n1", 101)))
    view = model.to_view(state)
    assert [t.index for t in view.tablets_of("x")] == [0, 1]
    assert view.tablets_of("nope") == ()
    assert view.tablet("x", 2) is None
    assert {t.index for t in view.tablets_led_by("n2")} == {0, 1}
    assert view.tablets_led_by("n1") == []
    assert len(view.tablets_replicated_on("n1")) == 2
    t0 = view.tablet("x", 0)
    assert t0 is not None and view.leader_address(t0) == "h:2"
    assert sorted(view.live_nodes()) == ["n2", "n3"]
    # TabletId is a plain tuple for lookups
    assert view.tablets[("x", 0)] is t0  # type: ignore[index]


def test_leaderless_tablet_has_no_leader_address() -> None:
    state = cluster()
    for node, inc in (("n2", 102), ("n3", 103), ("n1", 101)):
        model.apply_entry(state, encode(FenceNode(5, node, inc)))
    view = model.to_view(state)
    t0 = view.tablet("x", 0)
    assert t0 is not None and view.leader_address(t0) is None
