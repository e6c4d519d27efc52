"""Where a follower truncates before fetching from a new leader (replication.rules.divergence).

Each case gives the follower's epoch cache ((epoch, start offset) pairs), its log's start and
end, and the leader's answer for the follower's latest epoch (the largest epoch the leader
knows at or below it, and where that epoch ends on the leader).
"""

from __future__ import annotations

import pytest

from replication.rules.divergence import divergence_point, epoch_to_reconcile
from storage.epochs import epoch_end_offset

Epochs = tuple[tuple[int, int], ...]


@pytest.mark.parametrize(
    ("epochs", "start", "end", "expected"),
    [
        pytest.param((), 0, 0, None, id="empty-log-no-epochs"),
        pytest.param((), 0, 5, None, id="no-epoch-known"),
        pytest.param(((0, 0), (2, 5)), 5, 5, None, id="empty-after-retention"),
        pytest.param(((0, 0), (2, 5)), 0, 9, 2, id="asks-about-its-latest-epoch"),
    ],
)
def test_epoch_to_reconcile(epochs: Epochs, start: int, end: int, expected: int | None) -> None:
    assert epoch_to_reconcile(epochs, start, end) == expected


@pytest.mark.parametrize(
    ("epochs", "start", "end", "answer", "expected"),
    [
        pytest.param(((0, 0),), 0, 10, (0, 15), 10, id="same-epoch-follower-behind-keeps-all"),
        pytest.param(((0, 0),), 0, 10, (0, 10), 10, id="same-epoch-same-end"),
        pytest.param(((0, 0), (1, 10)), 0, 13, (1, 11), 11, id="same-epoch-follower-ahead"),
        pytest.param(
            ((0, 0), (1, 10)), 0, 13, (0, 10), 10, id="kip-101-epoch-never-reached-the-leader"
        ),
        pytest.param(
            ((0, 0), (2, 5)), 0, 12, (1, 8), 5, id="kip-279-double-failover-own-end-is-smaller"
        ),
        pytest.param(((0, 0), (2, 5)), 0, 12, (-1, -1), 0, id="no-common-epoch-keeps-nothing"),
        pytest.param(((3, 20),), 20, 30, (1, 25), 20, id="no-own-epoch-at-or-below-the-leaders"),
        pytest.param(((2, 100),), 100, 120, (2, 110), 110, id="after-retention-cut-the-start"),
        pytest.param(((0, 0), (4, 7)), 0, 9, (4, 20), 9, id="never-beyond-its-own-end"),
    ],
)
def test_divergence_point(
    epochs: Epochs, start: int, end: int, answer: tuple[int, int], expected: int
) -> None:
    assert divergence_point(epochs, start, end, *answer) == expected


@pytest.mark.parametrize(
    ("leader_epochs", "leader_end", "follower_epochs", "follower_end", "expected"),
    [
        pytest.param(
            ((0, 0), (2, 10)), 15, ((0, 0), (1, 10)), 13, 10, id="divergent-tail-of-an-old-epoch"
        ),
        pytest.param(
            ((0, 0), (1, 5), (3, 8)), 10, ((0, 0), (2, 5)), 12, 5, id="fast-double-failover"
        ),
        pytest.param(((0, 0), (1, 6)), 7, ((0, 0),), 5, 5, id="a-follower-behind-keeps-its-log"),
    ],
)
def test_the_exchange_with_a_leader(
    leader_epochs: Epochs,
    leader_end: int,
    follower_epochs: Epochs,
    follower_end: int,
    expected: int,
) -> None:
    """The leader's answer as ``storage.epochs`` computes it, then the follower's cut."""
    asked = epoch_to_reconcile(follower_epochs, 0, follower_end)
    assert asked is not None
    answer = epoch_end_offset(leader_epochs, asked, leader_end)
    assert divergence_point(follower_epochs, 0, follower_end, *answer) == expected
