"""Deterministic reproductions of what the nemeses found, one fault sequence each.

Each test drives the cluster through one precise sequence (no random schedule) and checks the
product promise for it: the replicas of every tablet become whole and equal again.
"""

from __future__ import annotations

import functools
import random
import time
from pathlib import Path

import pytest

from testkit.cluster import Cluster
from testkit.waiting import wait_until
from tests.faults.checker import Fault
from tests.faults.nemesis import (
    Nemesis,
    NemesisContext,
    NemesisError,
    dump_fetcher_tasks,
    tablets_view,
    wait_stable,
)
from tests.faults.runner import RunConfig, create_log, fault_cluster, run
from tests.faults.workload import RunClock, Workload, WorkloadConfig, final_read, replica_states

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]

LOG = "scenario"
ROUNDS = 6
TABLETS = 3


def _context(cluster: Cluster, workload: Workload | None, clock: RunClock) -> NemesisContext:
    return NemesisContext(
        cluster, LOG, TABLETS, random.Random(0), clock, workload, stable_timeout_s=45
    )


def _fill(cluster: Cluster, tablet: int, records: int) -> None:
    """Produce ``records`` acknowledged records to ``tablet`` in batches of 50."""
    for start in range(0, records, 50):
        batch = [
            {"key": f"k{i % 7}", "value": f"fill-{tablet}-{i}-" + "x" * 40, "tablet": tablet}
            for i in range(start, min(start + 50, records))
        ]
        cluster.produce(LOG, batch, timeout_s=30)


def test_a_bit_flip_in_a_followers_closed_segment_is_detected_and_repaired(
    tmp_path: Path,
) -> None:
    """docs/architecture.md#the-promise: bit flips in segment files are detected and the
    replica recovers from the leader. One bit of a record *value* in the first (closed) segment
    of a follower is flipped while the follower is stopped; once it is back in sync, its own
    digest must equal the leader's (a replica that cannot compute it, or still holds the damage,
    has not recovered)."""
    with fault_cluster(tmp_path) as cluster:
        create_log(cluster, RunConfig([], 0, 0, log=LOG, tablets=TABLETS))
        _fill(cluster, 0, 1500)
        info = cluster.tablet(LOG, 0)
        follower = next(r for r in info["isr"] if r != info["leader"])
        wait_until(
            lambda: cluster.digests_agree(LOG, 0, info["replicas"]),
            30,
            "replicas agree before the fault",
        )
        cluster.stop(follower)
        directory = cluster.tablet_dir(follower, LOG, 0)
        first = sorted(directory.glob("*.log"))[0]
        data = bytearray(first.read_bytes())
        position = data.index(b"fill-0-100-") + 3  # inside a value, in a closed segment
        data[position] ^= 0x04
        first.write_bytes(bytes(data))
        cluster.start(follower)
        ctx = _context(cluster, None, RunClock())
        wait_stable(ctx)
        urls = {n: node.url for n, node in cluster.nodes.items()}

        def recovered() -> bool:
            states = replica_states(urls, LOG, 0, info["replicas"])
            return not any(s.error for s in states) and len({s.digest for s in states}) == 1

        try:
            wait_until(recovered, 30, f"{follower}'s replica of {LOG}/0 is repaired")
        except AssertionError as exc:
            states = replica_states(urls, LOG, 0, info["replicas"])
            pytest.fail(f"{exc}: {states}\n{cluster.logs_tail(40)}", pytrace=False)


def test_replication_resumes_after_a_whole_cluster_crash_with_a_late_leader(
    tmp_path: Path,
) -> None:
    """Kill -9 every node, then start them one by one — a follower F, the old controller C a
    second later, a tablet leader L (neither of them) three seconds after that: the cluster must
    become whole again (every replica fetching, every ISR full) under a running workload.

    While L is down, F's fetches from it are refused and F reports L unreachable to C, which
    answers ``not_controller`` until it has claimed the role again."""
    with fault_cluster(tmp_path) as cluster:
        create_log(cluster, RunConfig([], 0, 0, log=LOG, tablets=TABLETS))
        clock = RunClock()
        urls = {n: node.url for n, node in cluster.nodes.items()}
        workload = Workload(
            urls,
            LOG,
            TABLETS,
            seed=1,
            clock=clock,
            config=WorkloadConfig(idempotent_writers_per_tablet=0),
        )
        ctx = _context(cluster, workload, clock)
        workload.start()
        try:
            for _ in range(ROUNDS):
                wait_stable(ctx, since=clock())
                controller = cluster.controller()
                assert controller is not None
                late = wait_until(  # preferred leaders move back after a restart
                    functools.partial(_led_by_another, cluster, controller),
                    60,
                    f"a tablet led by another node than the controller {controller}",
                )
                first = next(n for n in cluster.nodes if n not in (controller, late))
                cluster.crash_all()
                cluster.start(first)
                time.sleep(1)  # staggered starts: the outage of the others
                cluster.start(controller)
                time.sleep(3)
                cluster.start(late)
                try:
                    wait_stable(ctx, since=clock())
                except AssertionError as exc:
                    pytest.fail(
                        f"{exc}\n{dump_fetcher_tasks(cluster)}\n{_fetch_loop_deaths(cluster)}",
                        pytrace=False,
                    )
            deaths = _fetch_loop_deaths(cluster)
            # A fetch loop that ends while its node runs is never restarted: that follower
            # stops replicating from that leader for good (the ISR shrinks and stays shrunk).
            assert deaths == "no fetch loop ended", deaths
        finally:
            workload.stop()
        final = final_read(urls, LOG, TABLETS)
        assert not final.errors


def _led_by_another(cluster: Cluster, controller: str) -> str | None:
    return next((n for n in cluster.leaders(LOG).values() if n and n != controller), None)


def _fetch_loop_deaths(cluster: Cluster) -> str:
    """node_debug's warnings about fetch loops that ended (their tracebacks are in the logs)."""
    deaths = [
        line.split(" (closing")[0]
        for node in cluster.nodes.values()
        for line in node.log_path.read_text(errors="replace").splitlines()
        if "fetch loop from" in line and "ended by" in line
    ]
    return "\n".join(deaths) or "no fetch loop ended"


def test_stopping_the_controller_leaves_the_other_nodes_in_charge(tmp_path: Path) -> None:
    """SIGTERM the controller node under load and keep it down: the two other nodes must keep
    leading and replicating every tablet between them (one node down of three), i.e. every
    tablet led by a running node with both running nodes in its ISR, within the session
    timeout or so. Fencing the healthy nodes on the way out would leave tablets with an ISR of
    the stopped node alone: offline until it returns."""
    with fault_cluster(tmp_path) as cluster:
        create_log(cluster, RunConfig([], 0, 0, log=LOG, tablets=TABLETS))
        clock = RunClock()
        urls = {n: node.url for n, node in cluster.nodes.items()}
        workload = Workload(
            urls,
            LOG,
            TABLETS,
            seed=3,
            clock=clock,
            config=WorkloadConfig(idempotent_writers_per_tablet=0),
        )
        ctx = _context(cluster, workload, clock)
        workload.start()
        try:
            wait_stable(ctx, since=clock())
            controller = cluster.controller()
            assert controller is not None
            stopped_at = clock()
            cluster.stop(controller)
            others = [n for n in cluster.nodes if n != controller]

            def served_by_the_others() -> bool:
                tablets = tablets_view(ctx)
                return all(
                    t["leader"] in others and set(others) <= set(t["isr"]) for t in tablets
                ) and all(n > 0 for n in workload.acked_since(stopped_at).values())

            try:
                wait_until(
                    served_by_the_others, 20, f"{others} serve every tablet without {controller}"
                )
            except AssertionError as exc:
                fenced = [
                    line
                    for n in [*others, controller]
                    for line in cluster.nodes[n].log_path.read_text().splitlines()
                    if "fenced" in line
                ]
                pytest.fail(
                    f"{exc} (stopped at t={stopped_at:.1f}): "
                    f"{[(t['tablet'], t['leader'], t['isr']) for t in tablets_view(ctx)]}"
                    "\n" + "\n".join(fenced[-6:]),
                    pytrace=False,
                )
        finally:
            workload.stop()


class StopControllerTruncateRestart(Nemesis):
    """SIGTERM the controller node, cut one of its tablet-0 segments (the first one) in half,
    start it: a corruption of one replica of three, which the other two can repair."""

    name = "stop-controller-truncate-restart"

    def run(self, ctx: NemesisContext) -> Fault:
        controller = ctx.cluster.controller()
        if controller is None:
            raise NemesisError("no controller")
        started = ctx.clock()
        ctx.cluster.stop(controller)
        what = ctx.cluster.corrupt(controller, LOG, 0, _first_segment_halved)
        ctx.cluster.start(controller)
        return Fault(self.name, controller, started, ctx.clock(), what)


def _first_segment_halved(directory: Path) -> str:
    first = sorted(p for p in directory.glob("*.log") if p.stat().st_size > 0)[0]
    size = first.stat().st_size
    with first.open("r+b") as f:
        f.truncate(size // 2)
    return f"truncated {first.name} from {size} to {size // 2} bytes"


def test_a_truncated_segment_on_the_restarted_controller_loses_nothing(tmp_path: Path) -> None:
    """The soak's data loss, as one fault: the controller node stops gracefully, one of its
    segments of tablet 0 is cut, it starts again. Two intact replicas hold every record; the
    checker must find nothing lost."""
    with fault_cluster(tmp_path) as cluster:
        outcome = run(
            cluster,
            RunConfig(
                [StopControllerTruncateRestart()],
                2,
                7,
                log=LOG,
                tablets=TABLETS,
                stable_timeout_s=40,
                converge_timeout_s=30,
            ),
        )
        table = outcome.table("stop controller, truncate its segment, restart")
        print(table)
        assert outcome.ok, table + "\n" + "\n".join(outcome.notes)
