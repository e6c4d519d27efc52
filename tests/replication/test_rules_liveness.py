"""When the controller fences, probes or trusts a node, case by case (replication.rules.liveness).

Times in seconds: heartbeats are late after ``LATE`` (2 intervals), expired after ``TIMEOUT``.
"""

from __future__ import annotations

import math

import pytest

from replication.rules.liveness import is_expired, is_probe_due, is_stable, is_stalled

LATE, TIMEOUT = 0.4, 3.0


@pytest.mark.parametrize(
    ("since_last_check", "expected"),
    [
        pytest.param(0.1, False, id="a-normal-round"),
        pytest.param(0.8, False, id="exactly-two-late-periods"),
        pytest.param(0.81, True, id="stalled"),
    ],
)
def test_is_stalled(since_last_check: float, expected: bool) -> None:
    assert is_stalled(since_last_check, LATE) is expected


@pytest.mark.parametrize(
    ("silent", "expected"),
    [
        pytest.param(2.9, False, id="within-the-session"),
        pytest.param(3.0, False, id="exactly-the-session-timeout"),
        pytest.param(3.1, True, id="expired"),
    ],
)
def test_is_expired(silent: float, expected: bool) -> None:
    assert is_expired(silent, TIMEOUT) is expected


@pytest.mark.parametrize(
    ("silent", "since_probe", "expected"),
    [
        pytest.param(0.3, math.inf, False, id="heartbeat-on-time"),
        pytest.param(0.4, math.inf, False, id="exactly-late-is-on-time"),
        pytest.param(0.5, math.inf, True, id="late-never-probed"),
        pytest.param(0.5, 0.2, False, id="late-probed-recently"),
        pytest.param(0.5, 0.5, True, id="late-probed-a-while-ago"),
        pytest.param(3.0, math.inf, True, id="late-up-to-the-timeout"),
        pytest.param(3.1, math.inf, False, id="expired-is-fenced-not-probed"),
    ],
)
def test_is_probe_due(silent: float, since_probe: float, expected: bool) -> None:
    assert is_probe_due(silent, since_probe, LATE, TIMEOUT) is expected


@pytest.mark.parametrize(
    ("alive_for", "silent", "expected"),
    [
        pytest.param(None, 0.0, False, id="not-registered-alive"),
        pytest.param(9.9, 0.0, False, id="alive-too-briefly"),
        pytest.param(10.0, 0.0, True, id="alive-long-enough"),
        pytest.param(60.0, 0.5, False, id="heartbeat-late"),
        pytest.param(60.0, 0.4, True, id="heartbeat-just-on-time"),
    ],
)
def test_is_stable(alive_for: float | None, silent: float, expected: bool) -> None:
    assert is_stable(alive_for, silent, 10.0, LATE) is expected
