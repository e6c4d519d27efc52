"""The high-watermark rule, case by case (replication.rules.high_watermark)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from replication.rules.high_watermark import (
    acknowledgeable_offset,
    follower_high_watermark,
    high_watermark_restored,
    leader_high_watermark,
)
from storage.config import FsyncPolicy


@dataclass(frozen=True)
class Acked:
    durable_offset: int | None


@pytest.mark.parametrize(
    ("fsync", "flushed", "end", "expected"),
    [
        pytest.param("always", 4, 9, 4, id="fsync-always-counts-the-fsynced-end"),
        pytest.param("never", 4, 9, 9, id="fsync-never-counts-the-written-end"),
        pytest.param(100, 4, 9, 9, id="fsync-interval-counts-the-written-end"),
    ],
)
def test_acknowledgeable_offset(fsync: FsyncPolicy, flushed: int, end: int, expected: int) -> None:
    assert acknowledgeable_offset(fsync, flushed, end) == expected


@pytest.mark.parametrize(
    ("current", "position", "hw_isr", "followers", "expected"),
    [
        pytest.param(0, 10, {"a"}, {}, 10, id="leader-alone-commits-its-position"),
        pytest.param(
            0, 10, {"a", "b", "c"}, {"b": 7, "c": 5}, 5, id="minimum-over-the-in-sync-set"
        ),
        pytest.param(0, 4, {"a", "b"}, {"b": 7}, 4, id="the-leader-position-bounds-it"),
        pytest.param(
            3, 10, {"a", "b", "c"}, {"b": 7, "c": None}, 3, id="no-position-at-this-epoch-holds-it"
        ),
        pytest.param(3, 10, {"a", "b", "d"}, {"b": 7}, 3, id="an-untracked-member-holds-it"),
        pytest.param(8, 10, {"a", "b"}, {"b": 5}, 8, id="never-moves-backwards"),
        pytest.param(
            0, 10, {"a", "b", "c"}, {"b": 9, "c": 2}, 2, id="a-pending-addition-holds-it-back"
        ),
        pytest.param(
            0, 10, {"a", "b"}, {"b": 9, "c": 0}, 9, id="a-replica-outside-the-set-does-not-count"
        ),
        pytest.param(
            0, 10, {"a", "b"}, {"b": 12}, 10, id="a-follower-ahead-of-the-durable-leader-waits"
        ),
    ],
)
def test_leader_high_watermark(
    current: int,
    position: int,
    hw_isr: set[str],
    followers: dict[str, int | None],
    expected: int,
) -> None:
    acked = {r: Acked(d) for r, d in followers.items()}
    assert leader_high_watermark(current, "a", position, sorted(hw_isr), acked) == expected


@pytest.mark.parametrize(
    ("current", "leader_hw", "end", "expected"),
    [
        pytest.param(0, 5, 10, 5, id="follows-the-leader"),
        pytest.param(0, 10, 6, 6, id="not-past-its-own-end"),
        pytest.param(7, 5, 10, 7, id="never-moves-backwards"),
        pytest.param(5, 5, 5, 5, id="unchanged"),
    ],
)
def test_follower_high_watermark(current: int, leader_hw: int, end: int, expected: int) -> None:
    assert follower_high_watermark(current, leader_hw, end) == expected


@pytest.mark.parametrize(
    ("hw_isr", "followers", "expected"),
    [
        pytest.param({"a"}, {}, True, id="a-leader-alone-is-restored-at-once"),
        pytest.param({"a"}, {"b": None, "c": None}, True, id="replicas-outside-the-isr-dont-count"),
        pytest.param({"a", "b", "c"}, {"b": None, "c": None}, False, id="nobody-reported-yet"),
        pytest.param({"a", "b", "c"}, {"b": 7, "c": None}, False, id="one-member-still-silent"),
        pytest.param({"a", "b", "c"}, {"b": 7, "c": 0}, True, id="every-member-reported"),
        pytest.param({"a", "b", "d"}, {"b": 7}, False, id="an-untracked-member-is-silent"),
        pytest.param({"a", "b"}, {"b": 3, "c": None}, True, id="a-pending-add-that-fetched"),
    ],
)
def test_high_watermark_restored(
    hw_isr: set[str], followers: dict[str, int | None], expected: bool
) -> None:
    acked = {r: Acked(d) for r, d in followers.items()}
    assert high_watermark_restored("a", sorted(hw_isr), acked) is expected
