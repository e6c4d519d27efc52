"""The taint rule, case by case (replication.rules.taint): a replica that lost committed
records never leads until it has them again."""

from __future__ import annotations

import pytest

from replication.rules.taint import (
    Leadership,
    caught_up_with_leader,
    leadership,
    lost_committed_records,
    may_repair,
    successor,
    tainted_at_open,
)
from tests.replication.views import cluster_view, tablet


@pytest.mark.parametrize(
    ("repair", "lost", "expected"),
    [
        pytest.param(False, False, False, id="whole"),
        pytest.param(True, False, True, id="cut-before-a-corrupt-batch"),
        pytest.param(False, True, True, id="recovery-cut-below-the-high-watermark"),
        pytest.param(True, True, True, id="both"),
    ],
)
def test_tainted_at_open(repair: bool, lost: bool, expected: bool) -> None:
    assert tainted_at_open(repair, lost) is expected


@pytest.mark.parametrize(
    ("previous", "fetch", "hw", "expected"),
    [
        pytest.param(None, 2, 5, False, id="first-fetch-at-this-epoch"),
        pytest.param(5, 5, 5, False, id="same-position"),
        pytest.param(3, 4, 5, False, id="moving-forward"),
        pytest.param(5, 2, 5, True, id="back-below-the-high-watermark"),
        pytest.param(9, 6, 5, False, id="back-but-above-the-high-watermark-uncommitted-tail"),
        pytest.param(5, 5, 9, False, id="behind-but-not-backwards"),
    ],
)
def test_lost_committed_records(previous: int | None, fetch: int, hw: int, expected: bool) -> None:
    assert lost_committed_records(previous, fetch, hw) is expected


@pytest.mark.parametrize(
    ("end", "leader_hw", "expected"),
    [
        pytest.param(4, 5, False, id="still-behind"),
        pytest.param(5, 5, True, id="at-the-high-watermark"),
        pytest.param(7, 5, True, id="past-the-high-watermark"),
    ],
)
def test_caught_up_with_leader(end: int, leader_hw: int, expected: bool) -> None:
    assert caught_up_with_leader(end, leader_hw) is expected


@pytest.mark.parametrize(
    ("isr", "alive", "expected"),
    [
        pytest.param(("a", "b", "c"), "abc", "b", id="first-other-in-isr-order"),
        pytest.param(("a", "c", "b"), "abc", "c", id="isr-order-not-replica-order"),
        pytest.param(("a", "b", "c"), "ac", "c", id="skips-a-dead-member"),
        pytest.param(("a", "b"), "ac", None, id="only-a-dead-member-left"),
        pytest.param(("a",), "abc", None, id="alone-in-the-isr"),
        pytest.param(("a", "x"), "abc", None, id="a-member-the-map-does-not-know"),
    ],
)
def test_successor(isr: tuple[str, ...], alive: str, expected: str | None) -> None:
    info = tablet("a", isr)
    assert successor(info, cluster_view([info], alive=alive), "a") == expected


@pytest.mark.parametrize(
    ("leader", "isr", "alive", "expected"),
    [
        pytest.param("b", ("a", "b"), "ab", True, id="a-follower-may-always-repair"),
        pytest.param("a", ("a", "b"), "ab", True, id="a-leader-with-a-successor"),
        pytest.param("a", ("a", "b"), "a", False, id="a-leader-with-no-live-successor"),
        pytest.param("a", ("a",), "abc", False, id="a-leader-alone-in-the-isr"),
        pytest.param(None, ("a",), "a", True, id="no-leader"),
    ],
)
def test_may_repair(leader: str | None, isr: tuple[str, ...], alive: str, expected: bool) -> None:
    info = tablet(leader, isr)
    assert may_repair(info, cluster_view([info], alive=alive), "a") is expected


@pytest.mark.parametrize(
    ("tainted", "handled", "has_successor", "can_hand_off", "expected"),
    [
        pytest.param(False, None, True, True, Leadership.LEAD, id="whole-leads"),
        pytest.param(False, 3, False, False, Leadership.LEAD, id="whole-leads-whatever-else"),
        pytest.param(True, None, True, True, Leadership.HAND_OFF, id="tainted-hands-off"),
        pytest.param(
            True, 2, True, True, Leadership.HAND_OFF, id="tainted-asks-again-at-a-new-epoch"
        ),
        pytest.param(
            True, 3, True, True, Leadership.ALREADY_ASKED, id="tainted-asks-once-per-epoch"
        ),
        pytest.param(True, None, False, True, Leadership.UNAVAILABLE, id="tainted-no-successor"),
        pytest.param(True, None, True, False, Leadership.UNAVAILABLE, id="tainted-no-one-to-ask"),
        pytest.param(True, 3, False, True, Leadership.ALREADY_ASKED, id="unavailable-said-once"),
    ],
)
def test_leadership(
    tainted: bool,
    handled: int | None,
    has_successor: bool,
    can_hand_off: bool,
    expected: Leadership,
) -> None:
    assert leadership(tainted, handled, 3, has_successor, can_hand_off) is expected
