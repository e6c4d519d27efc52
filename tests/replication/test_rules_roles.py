"""Role assignment from the metadata view, case by case (replication.rules.roles).

The node deciding is ``c`` at incarnation 1 unless a case says otherwise.
"""

from __future__ import annotations

import pytest

from replication.model import TabletId, TabletInfo
from replication.rules.roles import (
    OFFLINE,
    Follow,
    Lead,
    Role,
    is_newer_creation,
    plan_roles,
    role_for,
    seen_by,
)
from tests.replication.views import cluster_view, tablet


@pytest.mark.parametrize(
    ("info", "incarnation", "expected"),
    [
        pytest.param(tablet("c", incarnation=1, epoch=4), 1, Lead(4), id="named-leader-leads"),
        pytest.param(tablet("c", incarnation=1), 2, OFFLINE, id="an-old-incarnation-never-resumes"),
        pytest.param(tablet("a", epoch=5), 1, Follow("a", "a:1", 5), id="follows-the-leader"),
        pytest.param(tablet(None), 1, OFFLINE, id="no-leader"),
        pytest.param(tablet("x"), 1, OFFLINE, id="a-leader-the-map-does-not-know"),
        pytest.param(tablet(""), 1, OFFLINE, id="an-empty-leader-name"),
    ],
)
def test_role_for(info: TabletInfo, incarnation: int, expected: Role) -> None:
    assert role_for(info, cluster_view([info]), "c", incarnation) == expected


def test_a_dead_leader_is_still_followed() -> None:
    """Whether the leader is alive is the controller's call: the follower keeps fetching (and
    reports it unreachable) until the map names another one."""
    info = tablet("a")
    assert role_for(info, cluster_view([info], alive="bc"), "c", 1) == Follow("a", "a:1", 3)


ELSEWHERE = tablet("a", ("a", "b"), replicas=("a", "b"), log="elsewhere")
LED = tablet("c", log="led", epoch=7)
FOLLOWED = tablet("b", log="followed")


@pytest.mark.parametrize(
    ("tablets", "expected"),
    [
        pytest.param([], {}, id="empty-map"),
        pytest.param([ELSEWHERE], {}, id="not-placed-here"),
        pytest.param(
            [LED, ELSEWHERE, FOLLOWED],
            {TabletId("led", 0): Lead(7), TabletId("followed", 0): Follow("b", "b:1", 3)},
            id="lead-and-follow-in-view-order",
        ),
    ],
)
def test_plan_roles_hosts_what_the_map_places_here(
    tablets: list[TabletInfo], expected: dict[TabletId, Role]
) -> None:
    plan = plan_roles(cluster_view(tablets), "c", 1, {}, complete=True)
    assert {t: h.role for t, h in plan.hosted.items()} == expected
    assert list(plan.hosted) == list(expected)
    assert all(h.info.id == t and h.log.name == t.log for t, h in plan.hosted.items())


def test_plan_roles_skips_a_tablet_whose_log_is_missing() -> None:
    view = cluster_view([LED, FOLLOWED], missing_logs=["led"])
    assert list(plan_roles(view, "c", 1, {}, complete=True).hosted) == [TabletId("followed", 0)]


GONE = TabletId("gone", 0)


@pytest.mark.parametrize(
    ("local", "complete", "log_seq", "expected"),
    [
        pytest.param({GONE: "2"}, True, 3, (GONE,), id="deleted-from-a-complete-map"),
        pytest.param({GONE: "2"}, False, 3, (), id="an-incomplete-view-deletes-nothing"),
        pytest.param({GONE: "4"}, True, 3, (), id="a-lagging-view-has-not-seen-its-creation"),
        pytest.param({GONE: "3"}, True, 3, (GONE,), id="the-latest-creation-seen"),
        pytest.param({GONE: ""}, True, 3, (), id="no-log-id-never-deleted"),
        pytest.param({TabletId("led", 0): "1"}, True, 3, (), id="still-placed-here-kept"),
    ],
)
def test_plan_roles_deletes_only_what_a_complete_view_proves_gone(
    local: dict[TabletId, str], complete: bool, log_seq: int, expected: tuple[TabletId, ...]
) -> None:
    view = cluster_view([LED], log_seq=log_seq)
    assert plan_roles(view, "c", 1, local, complete=complete).delete == expected


@pytest.mark.parametrize(
    ("log_id", "log_seq", "expected"),
    [
        pytest.param("1", 1, True, id="created-at-the-last-id"),
        pytest.param("1", 5, True, id="created-earlier"),
        pytest.param("6", 5, False, id="created-after-this-view"),
        pytest.param("0", 5, False, id="id-zero-is-no-id"),
        pytest.param("", 5, False, id="empty"),
        pytest.param("x1", 5, False, id="not-a-number"),
    ],
)
def test_seen_by(log_id: str, log_seq: int, expected: bool) -> None:
    assert seen_by(cluster_view(log_seq=log_seq), log_id) is expected


@pytest.mark.parametrize(
    ("found", "expected_id", "newer"),
    [
        pytest.param("5", "4", True, id="the-disk-is-ahead-of-the-map"),
        pytest.param("4", "5", False, id="an-older-creation-on-disk"),
        pytest.param("5", "5", False, id="the-same-creation"),
        pytest.param("", "5", False, id="no-id-on-disk"),
    ],
)
def test_is_newer_creation(found: str, expected_id: str, newer: bool) -> None:
    assert is_newer_creation(found, expected_id) is newer
