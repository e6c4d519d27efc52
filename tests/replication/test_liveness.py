"""LivenessTracker: the controller's timers, fed to the liveness rules."""

from __future__ import annotations

from replication.liveness import REBALANCE_PACE_S, LivenessTracker
from tests.replication.views import cluster_view, tablet

TIMEOUT, LATE = 3.0, 0.4
T0 = 100.0


def tracker(rebalance_after_s: float | None = 10.0) -> LivenessTracker:
    live = LivenessTracker(TIMEOUT, LATE, rebalance_after_s)
    live.reset(cluster_view(), T0)
    return live


def test_a_new_controller_gives_everyone_a_full_session() -> None:
    live = tracker()
    view = cluster_view()
    assert live.expired(view, T0 + TIMEOUT) == []
    assert [n.id for n in live.expired(view, T0 + TIMEOUT + 0.1)] == ["a", "b", "c"]


def test_a_heartbeat_restarts_the_silence() -> None:
    live = tracker()
    live.heard_from("b", T0 + 2.0)
    assert live.silent_s("b", T0 + 3.5) == 1.5
    view = cluster_view()
    assert [n.id for n in live.expired(view, T0 + 3.5)] == ["a", "c"]


def test_a_dead_node_is_neither_expired_nor_probed() -> None:
    live = tracker()
    view = cluster_view(alive="ab")
    assert [n.id for n in live.expired(view, T0 + 10)] == ["a", "b"]
    assert live.to_probe(view, T0 + 1) == ["a", "b"]


def test_a_late_node_is_probed_at_most_once_per_late_period() -> None:
    live = tracker()
    view = cluster_view()
    live.heard_from("a", T0 + 0.5)
    live.heard_from("b", T0 + 0.5)
    assert live.to_probe(view, T0 + 0.5) == ["c"]
    assert live.to_probe(view, T0 + 0.6) == [], "probed just now"
    live.heard_from("a", T0 + 0.9)
    live.heard_from("b", T0 + 0.9)
    assert live.to_probe(view, T0 + 0.95) == ["c"]


def test_a_stalled_controller_restarts_every_timer() -> None:
    live = tracker()
    assert not live.check_stall(T0 + 0.1)
    assert live.check_stall(T0 + 5.0)
    assert live.expired(cluster_view(), T0 + 5.0 + TIMEOUT) == []


def test_leadership_moves_back_once_the_preferred_node_is_stable() -> None:
    live = tracker()
    moved = tablet("b", ("a", "b", "c"))  # preferred leader a, led by b since a failover
    view = cluster_view([moved])
    live.fenced("a")
    live.registered("a", T0 + 1)
    live.heard_from("a", T0 + 10.5)
    assert live.rebalance_candidate(view, T0 + 10.5) is None, "a is alive for 9.5 s only"
    assert live.rebalance_candidate(view, T0 + 11.0) is None, "at most one move per pace"
    live.heard_from("a", T0 + 11.0 + REBALANCE_PACE_S)
    assert live.rebalance_candidate(view, T0 + 11.0 + REBALANCE_PACE_S) is moved


def test_a_fenced_or_silent_node_gets_no_leadership_back() -> None:
    live = tracker()
    view = cluster_view([tablet("b", ("a", "b", "c"))])
    live.fenced("a")
    assert live.rebalance_candidate(view, T0 + 60) is None, "a is not registered alive"
    live.registered("a", T0)
    assert live.rebalance_candidate(view, T0 + 60 + REBALANCE_PACE_S) is None, "a is silent"


def test_no_rebalance_when_turned_off() -> None:
    live = tracker(rebalance_after_s=None)
    view = cluster_view([tablet("b", ("a", "b", "c"))])
    live.heard_from("a", T0 + 60)
    assert live.rebalance_candidate(view, T0 + 60) is None
