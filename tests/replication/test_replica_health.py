"""ReplicaHealth: a tainted replica refuses leadership and asks, once per epoch, for a hand-off;
the taint clears once it caught up; repairs are requested once."""

from __future__ import annotations

import asyncio

import pytest

from replication.errors import MetadataTimeout
from replication.model import TabletId, TabletInfo
from replication.replica_health import ReplicaHealth
from tests.replication.views import cluster_view, tablet

TABLET = TabletId("log", 0)


class HandOffs:
    """Stands in for the controller's elect_leader: records the requests, may fail them."""

    def __init__(self) -> None:
        self.requests: list[tuple[int, str]] = []
        self.fail = False

    async def __call__(self, info: TabletInfo, successor: str) -> object:
        self.requests.append((info.leader_epoch, successor))
        if self.fail:
            raise MetadataTimeout("no controller")
        return None


async def test_a_whole_replica_leads() -> None:
    health = ReplicaHealth("a", HandOffs())
    info = tablet("a")
    assert health.may_lead(TABLET, info, cluster_view([info]))


async def test_a_tainted_replica_hands_off_once_per_epoch() -> None:
    hand_offs = HandOffs()
    health = ReplicaHealth("a", hand_offs)
    health.taint(TABLET, end_offset=3)
    info = tablet("a", epoch=3)
    view = cluster_view([info])
    assert not health.may_lead(TABLET, info, view)
    assert not health.may_lead(TABLET, info, view)
    await asyncio.sleep(0)
    assert hand_offs.requests == [(3, "b")]
    newer = tablet("a", epoch=4)
    assert not health.may_lead(TABLET, newer, cluster_view([newer]))
    await asyncio.sleep(0)
    assert hand_offs.requests == [(3, "b"), (4, "b")]


async def test_a_failed_hand_off_is_asked_again() -> None:
    hand_offs = HandOffs()
    hand_offs.fail = True
    health = ReplicaHealth("a", hand_offs)
    health.taint(TABLET, end_offset=3)
    info = tablet("a")
    view = cluster_view([info])
    assert not health.may_lead(TABLET, info, view)
    await asyncio.sleep(0)
    assert not health.may_lead(TABLET, info, view)
    await asyncio.sleep(0)
    assert hand_offs.requests == [(3, "b"), (3, "b")]


@pytest.mark.parametrize(
    ("isr", "alive", "with_controller"),
    [
        pytest.param(("a",), "abc", True, id="alone-in-the-isr"),
        pytest.param(("a", "b"), "a", True, id="no-live-in-sync-replica"),
        pytest.param(("a", "b"), "ab", False, id="no-controller-to-ask"),
    ],
)
async def test_a_tainted_replica_with_no_one_to_hand_to_stays_unavailable(
    isr: tuple[str, ...], alive: str, with_controller: bool, caplog: pytest.LogCaptureFixture
) -> None:
    hand_offs = HandOffs()
    health = ReplicaHealth("a", hand_offs if with_controller else None)
    health.taint(TABLET, end_offset=3)
    info = tablet("a", isr)
    view = cluster_view([info], alive=alive)
    assert not health.may_lead(TABLET, info, view)
    assert not health.may_lead(TABLET, info, view)
    await asyncio.sleep(0)
    assert hand_offs.requests == []
    unavailable = [r for r in caplog.records if "stays unavailable" in r.getMessage()]
    assert len(unavailable) == 1, "said once per epoch"


async def test_catching_up_clears_the_taint() -> None:
    health = ReplicaHealth("a", None)
    health.taint(TABLET, end_offset=3)
    info = tablet("a", ("a",))
    assert not health.may_lead(TABLET, info, cluster_view([info]))
    health.caught_up(TABLET)
    assert health.may_lead(TABLET, info, cluster_view([info]))


def test_a_repair_is_taken_once() -> None:
    health = ReplicaHealth("a", None)
    assert not health.take_repair(TABLET)
    health.request_repair(TABLET)
    assert health.take_repair(TABLET)
    assert not health.take_repair(TABLET)


@pytest.mark.parametrize(
    ("leader", "alive", "expected"),
    [
        pytest.param("b", "a", True, id="a-follower"),
        pytest.param("a", "ab", True, id="a-leader-with-a-successor"),
        pytest.param("a", "a", False, id="a-leader-with-the-only-copy"),
    ],
)
def test_may_repair(leader: str, alive: str, expected: bool) -> None:
    info = tablet(leader, ("a", "b"))
    health = ReplicaHealth("a", None)
    assert health.may_repair(TABLET, info, cluster_view([info], alive=alive)) is expected
