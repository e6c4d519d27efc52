"""Each nemesis, bounded, against a real 3-node cluster under the workload: no anomaly allowed.

One test per nemesis (two to five faults each), each on a fresh cluster with FAST_TUNING timers; the
whole file takes about three minutes on a 2-core machine. Every test prints the checker's table;
a failing one also prints what the nemeses did and the tail of every node's log. Replay a run
with ``TABLETLOG_FAULT_SEED=<seed>`` (timing still varies).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from testkit.cluster import Cluster
from testkit.netns import netns_available
from tests.faults.nemesis import (
    CorruptFollower,
    KillAll,
    KillLeader,
    Nemesis,
    PartitionLeader,
    PauseLeader,
    RestartAll,
    RestartController,
    RestartLeader,
)
from tests.faults.runner import Outcome, RunConfig, fault_cluster, run

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]

needs_netns = [
    pytest.mark.netns,
    pytest.mark.skipif(not netns_available(), reason="needs root and working `ip netns`"),
]


def verdict(
    outcome: Outcome, cluster: Cluster, title: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Print the table (past pytest's capture); save the history beside the node logs; fail
    with the table, the nemeses' notes and the node logs."""
    table = outcome.table(title)
    saved = outcome.save(cluster.base_dir / "history.json")
    with capsys.disabled():
        print(f"\n{table}\n  history and node logs: {saved.parent}")
    if not outcome.ok:
        notes = "\n".join(outcome.notes)
        pytest.fail(
            f"{table}\n--- nemeses ---\n{notes}\n--- node logs ---\n{cluster.logs_tail(80)}",
            pytrace=False,
        )


@pytest.mark.parametrize(
    ("nemeses", "faults", "netns"),
    [
        pytest.param([KillLeader()], 2, False, id="kill-leader"),
        # Cheap faults, and the leader hand-off races are narrow: a few more of them.
        pytest.param([RestartLeader()], 5, False, id="restart-leader"),
        pytest.param([RestartController()], 2, False, id="restart-controller"),
        pytest.param([PauseLeader()], 2, False, id="pause-leader"),
        pytest.param([PartitionLeader()], 2, True, id="partition-leader", marks=needs_netns),
        pytest.param([KillAll()], 2, False, id="kill-all"),
        pytest.param([CorruptFollower(("bitflip",))], 3, False, id="corrupt-follower-bitflip"),
        pytest.param([CorruptFollower(("truncate",))], 2, False, id="corrupt-follower-truncate"),
        pytest.param([RestartAll()], 2, False, id="restart-all"),
    ],
)
def test_nemesis_loses_nothing(
    tmp_path: Path,
    seed: int,
    capsys: pytest.CaptureFixture[str],
    nemeses: Sequence[Nemesis],
    faults: int,
    netns: bool,
) -> None:
    title = "+".join(repr(n) for n in nemeses)
    with fault_cluster(tmp_path, netns=netns) as cluster:
        outcome = run(
            cluster, RunConfig(nemeses, faults, seed, stable_timeout_s=40, converge_timeout_s=30)
        )
        assert outcome.report.faults == faults or outcome.error
        verdict(outcome, cluster, title, capsys)
