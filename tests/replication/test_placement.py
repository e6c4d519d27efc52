"""Placement spreads leaders and replicas evenly and deterministically; failover picks the ISR
(clean), or any alive replica when the log allows unclean election; leadership moves back to
the preferred replica once it is in sync and eligible."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from replication.placement import (
    choose_leader,
    choose_unclean_leader,
    failover_leader,
    place_replicas,
    preferred_leader_move,
)


def _counts(assignments: list[list[str]]) -> tuple[Counter[str], Counter[str]]:
    leaders = Counter(r[0] for r in assignments)
    replicas = Counter(n for r in assignments for n in r)
    return leaders, replicas


@given(
    nodes=st.integers(min_value=1, max_value=9),
    tablets=st.integers(min_value=1, max_value=60),
    data=st.data(),
)
def test_fresh_cluster_is_even_within_one(nodes: int, tablets: int, data: st.DataObject) -> None:
    rf = data.draw(st.integers(min_value=1, max_value=nodes))
    ids = [f"n{i}" for i in range(nodes)]
    result = place_replicas(ids, ids, [], tablets, rf)
    assert len(result) == tablets
    assert all(len(r) == rf == len(set(r)) for r in result)
    leaders, replicas = _counts(result)
    lead = [leaders.get(n, 0) for n in ids]
    held = [replicas.get(n, 0) for n in ids]
    assert max(lead) - min(lead) <= 1, lead
    assert max(held) - min(held) <= 1, held


@given(
    nodes=st.integers(min_value=2, max_value=7),
    batches=st.lists(st.integers(min_value=1, max_value=12), min_size=1, max_size=6),
    data=st.data(),
)
def test_successive_logs_stay_even(nodes: int, batches: list[int], data: st.DataObject) -> None:
    rf = data.draw(st.integers(min_value=1, max_value=nodes))
    ids = [f"n{i}" for i in range(nodes)]
    existing: list[list[str]] = []
    for count in batches:
        existing += place_replicas(ids, ids, existing, count, rf)
    leaders, replicas = _counts(existing)
    lead = [leaders.get(n, 0) for n in ids]
    held = [replicas.get(n, 0) for n in ids]
    assert max(lead) - min(lead) <= 1, lead
    assert max(held) - min(held) <= 1, held


@given(
    live=st.integers(min_value=1, max_value=5),
    dead=st.integers(min_value=0, max_value=4),
    tablets=st.integers(min_value=1, max_value=30),
)
def test_live_nodes_lead_and_are_used_first(live: int, dead: int, tablets: int) -> None:
    live_ids = [f"live{i}" for i in range(live)]
    all_ids = [f"dead{i}" for i in range(dead)] + live_ids
    rf = min(len(all_ids), live + 1) if dead else live
    for replicas in place_replicas(live_ids, all_ids, [], tablets, rf):
        assert replicas[0] in live_ids
        # every live node is used before any dead one
        assert set(replicas[: min(rf, live)]) <= set(live_ids)


def test_placement_is_deterministic_and_rejects_impossible_factors() -> None:
    ids = ["a", "b", "c"]
    assert place_replicas(ids, ids, [], 3, 2) == place_replicas(ids, ids, [], 3, 2)
    assert [r[0] for r in place_replicas(ids, ids, [], 3, 3)] == ["a", "b", "c"]
    with pytest.raises(ValueError, match="exceeds"):
        place_replicas(ids, ids, [], 1, 4)
    with pytest.raises(ValueError, match="positive"):
        place_replicas(ids, ids, [], 0, 1)


def test_choose_leader_prefers_replica_order_among_alive_isr() -> None:
    alive = {"b", "c"}.__contains__
    assert choose_leader(["a", "b", "c"], ["a", "b", "c"], alive, exclude="a") == "b"
    assert choose_leader(["a", "b", "c"], ["c", "a"], alive, exclude="a") == "c"
    assert choose_leader(["a", "b", "c"], ["a"], alive, exclude="a") is None
    assert choose_unclean_leader(["a", "b", "c"], alive, exclude="b") == "c"
    assert choose_unclean_leader(["a"], alive) is None


ALIVE_BC = frozenset("bc").__contains__


@pytest.mark.parametrize(
    ("replicas", "isr", "exclude", "expected"),
    [
        pytest.param("abc", "abc", "a", "b", id="first-alive-isr-member-in-replica-order"),
        pytest.param("abc", "ca", "a", "c", id="replica-order-not-isr-order"),
        pytest.param("abc", "a", "a", None, id="only-the-failed-leader-in-sync"),
        pytest.param("abc", "abc", None, "b", id="a-dead-preferred-leader-is-skipped"),
        pytest.param("bca", "abc", None, "b", id="the-preferred-leader-when-alive"),
        pytest.param("abc", "ab", "b", None, id="the-excluded-node-never-chosen"),
        pytest.param("abc", "", None, None, id="empty-isr-no-clean-leader"),
    ],
)
def test_choose_leader_table(
    replicas: str, isr: str, exclude: str | None, expected: str | None
) -> None:
    assert choose_leader(list(replicas), list(isr), ALIVE_BC, exclude=exclude) == expected


@pytest.mark.parametrize(
    ("replicas", "exclude", "expected"),
    [
        pytest.param("abc", "b", "c", id="first-alive-replica-in-or-out-of-the-isr"),
        pytest.param("abc", None, "b", id="a-dead-replica-is-skipped"),
        pytest.param("a", None, None, id="no-alive-replica"),
        pytest.param("cb", "c", "b", id="the-excluded-node-never-chosen"),
    ],
)
def test_choose_unclean_leader_table(
    replicas: str, exclude: str | None, expected: str | None
) -> None:
    assert choose_unclean_leader(list(replicas), ALIVE_BC, exclude=exclude) == expected


@dataclass(frozen=True)
class _Tablet:
    replicas: tuple[str, ...]
    leader: str | None
    isr: tuple[str, ...]


@pytest.mark.parametrize(
    ("tablets", "expected"),
    [
        pytest.param([_Tablet(("b", "c"), "b", ("b", "c"))], None, id="already-on-its-preferred"),
        pytest.param(
            [_Tablet(("b", "c"), "c", ("b", "c"))], 0, id="moves-back-to-an-in-sync-preferred"
        ),
        pytest.param([_Tablet(("b", "c"), "c", ("c",))], None, id="preferred-not-in-sync"),
        pytest.param([_Tablet(("a", "c"), "c", ("a", "c"))], None, id="preferred-not-eligible"),
        pytest.param(
            [_Tablet(("a", "c"), "c", ("a", "c")), _Tablet(("c", "b"), "b", ("b", "c"))],
            1,
            id="the-first-that-qualifies",
        ),
        pytest.param([_Tablet(("b", "c"), None, ("b",))], 0, id="a-leaderless-tablet"),
    ],
)
def test_preferred_leader_move(tablets: list[_Tablet], expected: int | None) -> None:
    moved = preferred_leader_move(tablets, ALIVE_BC)
    assert moved is (None if expected is None else tablets[expected])


@pytest.mark.parametrize(
    ("replicas", "isr", "unclean", "expected_leader", "expected_isr"),
    [
        pytest.param("abc", "abc", False, "b", "abc", id="clean-the-isr-is-kept"),
        pytest.param("abc", "ab", True, "b", "ab", id="clean-wins-even-when-unclean-allowed"),
        pytest.param("abc", "a", False, None, "a", id="no-clean-leader-stays-leaderless"),
        pytest.param("abc", "a", True, "b", "b", id="unclean-out-of-sync-leader-is-the-isr"),
        pytest.param("ab", "a", True, "b", "b", id="unclean-the-only-other-replica"),
        pytest.param("a", "a", True, None, "a", id="unclean-but-nobody-alive"),
    ],
)
def test_failover_leader_table(
    replicas: str, isr: str, unclean: bool, expected_leader: str | None, expected_isr: str
) -> None:
    leader, new_isr = failover_leader(list(replicas), list(isr), ALIVE_BC, "a", unclean)
    assert (leader, new_isr) == (expected_leader, tuple(expected_isr))
