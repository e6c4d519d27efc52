"""The soak: every nemesis in turn, for at least 200 faults, on one cluster (``make soak``).

Runs in network namespaces when it can (so that the partition nemesis takes part), else on
loopback without it. ``TABLETLOG_SOAK_FAULTS`` changes the number of faults,
``TABLETLOG_SOAK_NEMESES`` (comma-separated names) the nemeses, ``TABLETLOG_FAULT_SEED`` the seed.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from testkit.netns import netns_available
from tests.faults.nemesis import ALL_NEMESES, by_name
from tests.faults.runner import RunConfig, fault_cluster, run
from tests.faults.test_nemeses import verdict

pytestmark = [pytest.mark.soak, pytest.mark.timeout(4 * 3600)]


def test_soak_every_nemesis(tmp_path: Path, seed: int, capsys: pytest.CaptureFixture[str]) -> None:
    faults = int(os.environ.get("TABLETLOG_SOAK_FAULTS", "200"))
    names = os.environ.get("TABLETLOG_SOAK_NEMESES")
    nemeses = [by_name(n.strip()) for n in names.split(",")] if names else list(ALL_NEMESES)
    netns = netns_available() and any(n.needs_netns for n in nemeses)
    if not netns:
        nemeses = [n for n in nemeses if not n.needs_netns]
    with fault_cluster(tmp_path, netns=netns) as cluster:
        outcome = run(
            cluster, RunConfig(nemeses, faults, seed, schedule="cycle", stable_timeout_s=90)
        )
        verdict(outcome, cluster, f"soak: {', '.join(map(repr, nemeses))}", capsys)
