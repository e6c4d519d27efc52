"""The in-sync replica rules, case by case (replication.rules.isr)."""

from __future__ import annotations

import pytest

from replication.rules.isr import (
    IsrChange,
    isr_change,
    lagging_members,
    last_caught_up_s,
    rejoining_replicas,
)

NOW = 100.0


@pytest.mark.parametrize(
    ("previous", "fetch_offset", "leader_end", "end_at_last_fetch", "last_fetch", "expected"),
    [
        pytest.param(
            50.0, 10, 10, 8, 99.0, NOW, id="fetching-from-the-leader-end-is-caught-up-now"
        ),
        pytest.param(
            50.0, 8, 10, 8, 99.0, 99.0, id="at-the-end-as-of-the-last-fetch-caught-up-then"
        ),
        pytest.param(
            50.0, 7, 10, 8, 99.0, 50.0, id="behind-the-end-as-of-the-last-fetch-unchanged"
        ),
        pytest.param(50.0, 8, 10, 8, 0.0, 50.0, id="no-earlier-fetch-at-this-epoch-proves-nothing"),
        pytest.param(
            99.5, 8, 10, 8, 99.0, 99.5, id="never-moves-backwards-past-an-earlier-catch-up"
        ),
        pytest.param(
            float("-inf"), 10, 12, 10, 98.0, 98.0, id="a-removed-follower-catching-up-again"
        ),
    ],
)
def test_last_caught_up_s(
    previous: float,
    fetch_offset: int,
    leader_end: int,
    end_at_last_fetch: int,
    last_fetch: float,
    expected: float,
) -> None:
    got = last_caught_up_s(previous, NOW, fetch_offset, leader_end, end_at_last_fetch, last_fetch)
    assert got == expected


@pytest.mark.parametrize(
    ("isr", "caught_up", "expected"),
    [
        pytest.param(("a", "b", "c"), {"b": 99.0, "c": 98.0}, [], id="everyone-recent"),
        pytest.param(("a", "b", "c"), {"b": 90.0, "c": 98.0}, ["b"], id="one-lags"),
        pytest.param(("a", "b", "c"), {"b": 95.0, "c": 94.9}, ["c"], id="exactly-the-limit-is-in"),
        pytest.param(("a", "c"), {"b": 0.0, "c": 0.0}, ["c"], id="only-members-are-removed"),
        pytest.param(("a", "b"), {"b": float("-inf")}, ["b"], id="lost-committed-records"),
        pytest.param(("a", "d"), {"b": 0.0}, [], id="an-untracked-member-is-left-alone"),
        pytest.param(("a",), {"b": 0.0, "c": 0.0}, [], id="the-leader-never-lags"),
    ],
)
def test_lagging_members(
    isr: tuple[str, ...], caught_up: dict[str, float], expected: list[str]
) -> None:
    assert lagging_members(isr, "a", caught_up, NOW, lag_max_s=5.0) == expected


@pytest.mark.parametrize(
    ("durable", "isr", "pending", "expected"),
    [
        pytest.param({"b": 10, "c": 10}, ("a", "b", "c"), (), [], id="all-in-sync"),
        pytest.param(
            {"b": 10, "c": 10}, ("a", "b"), (), ["c"], id="caught-up-to-the-high-watermark"
        ),
        pytest.param({"b": 10, "c": 12}, ("a",), (), ["b", "c"], id="in-replica-order"),
        pytest.param({"b": 10, "c": 9}, ("a", "b"), (), [], id="behind-the-high-watermark"),
        pytest.param({"b": 10, "c": None}, ("a", "b"), (), [], id="no-fetch-at-this-epoch"),
        pytest.param({"b": 10, "c": 10}, ("a", "b"), ("c",), [], id="already-being-added"),
    ],
)
def test_rejoining_replicas(
    durable: dict[str, int | None],
    isr: tuple[str, ...],
    pending: tuple[str, ...],
    expected: list[str],
) -> None:
    assert rejoining_replicas(durable, isr, pending, 10, epoch_start_offset=8) == expected


@pytest.mark.parametrize(
    ("durable", "epoch_start", "expected"),
    [
        pytest.param(10, 8, ["c"], id="past-the-epoch-start"),
        pytest.param(10, 10, ["c"], id="at-the-epoch-start"),
        pytest.param(10, 12, [], id="not-past-the-epoch-start-may-hold-a-divergent-tail"),
    ],
)
def test_rejoining_needs_the_epoch_start(
    durable: int, epoch_start: int, expected: list[str]
) -> None:
    assert rejoining_replicas({"c": durable}, ("a",), (), 5, epoch_start) == expected


@pytest.mark.parametrize(
    ("isr", "lagging", "caught_up", "expected"),
    [
        pytest.param(("a", "b", "c"), [], [], None, id="nothing-to-change"),
        pytest.param(
            ("a", "b", "c"),
            ["b"],
            [],
            IsrChange(("a", "c"), frozenset("b"), frozenset()),
            id="shrink",
        ),
        pytest.param(
            ("a", "b"),
            [],
            ["c"],
            IsrChange(("a", "b", "c"), frozenset(), frozenset("c")),
            id="expand",
        ),
        pytest.param(
            ("a", "b"),
            ["b"],
            ["c"],
            IsrChange(("a", "c"), frozenset("b"), frozenset("c")),
            id="shrink-and-expand-at-once",
        ),
        pytest.param(
            ("a",),
            [],
            ["c", "b"],
            IsrChange(("a", "b", "c"), frozenset(), frozenset("bc")),
            id="replica-order",
        ),
    ],
)
def test_isr_change(
    isr: tuple[str, ...], lagging: list[str], caught_up: list[str], expected: IsrChange | None
) -> None:
    assert isr_change(("a", "b", "c"), isr, "a", lagging, caught_up) == expected


@pytest.mark.parametrize(
    ("replicas", "isr", "lagging", "expected"),
    [
        pytest.param(("b", "a", "c"), ("a", "b", "c"), ["c"], ("b", "a"), id="in-replica-order"),
        pytest.param(("b", "c", "a"), ("b", "c"), ["c"], ("a", "b"), id="a-missing-leader-first"),
    ],
)
def test_isr_change_always_holds_the_leader(
    replicas: tuple[str, ...], isr: tuple[str, ...], lagging: list[str], expected: tuple[str, ...]
) -> None:
    change = isr_change(replicas, isr, "a", lagging, [])
    assert change is not None
    assert change.isr == expected
