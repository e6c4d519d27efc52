"""Three "machines": each node in its own network namespace with its own address.

The config is generated the way cluster-configs/multi-host.yaml is written: every node's ``host``,
``bind`` and ``advertise`` are its own machine's address, and all use the same ports. The test
process, in the root namespace, plays the client on another machine: it creates a log, produces and
consumes, cuts one node (a tablet leader) off from its peers, checks that the other two keep
serving without losing an acknowledged record, heals, and checks that all replicas converge.
Only addresses of the test's own namespaces are ever contacted.
"""

from __future__ import annotations

import contextlib
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from testkit.http import call
from testkit.netns import NetnsLab, netns_available
from testkit.waiting import wait_until
from tests.deploy.workload import Ledger, converged, create_log, ready, tablet_leader

pytestmark = [
    pytest.mark.netns,
    pytest.mark.timeout(600),
    pytest.mark.skipif(not netns_available(), reason="needs root and working `ip netns`"),
]

API_PORT = 7101
RAFT_PORT = 7201
LOG = "multihost"
TABLETS = 3


@dataclass
class Machines:
    lab: NetnsLab
    config: Path
    procs: dict[int, subprocess.Popen[bytes]]
    logs: dict[int, Path]

    def url(self, k: int) -> str:
        return f"http://{self.lab.address(k)}:{API_PORT}"

    def node(self, k: int) -> str:
        return f"n{k}"

    def machine_of(self, node: str) -> int:
        return int(node.removeprefix("n"))

    @property
    def urls(self) -> dict[str, str]:
        return {self.node(k): self.url(k) for k in self.procs}

    def start(self, k: int) -> None:
        argv = [sys.executable, "-m", "node", "--config", str(self.config), "--node", self.node(k)]
        with self.logs[k].open("ab") as out:
            self.procs[k] = self.lab.run_in(k, argv, stdout=out, stderr=subprocess.STDOUT)

    def all_ready(self) -> bool:
        """Every node answers /readyz 200; fails at once if a node process has exited."""
        for k, proc in self.procs.items():
            if proc.poll() is not None:
                pytest.fail(f"n{k} exited with {proc.returncode} (its log is printed)")
        return all(ready(u) for u in self.urls.values())

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

    def print_logs(self) -> None:
        for k, path in sorted(self.logs.items()):
            with contextlib.suppress(OSError):
                tail = path.read_text(errors="replace").splitlines()[-60:]
                print(f"===== n{k} ({self.lab.address(k)}) =====", *tail, sep="\n")


def write_config(lab: NetnsLab, directory: Path) -> Path:
    """A cluster config in the shape of cluster-configs/multi-host.yaml, for the lab's addresses."""
    nodes = []
    for k in range(1, lab.size + 1):
        address = lab.address(k)
        nodes.append(
            {
                "id": f"n{k}",
                "host": address,
                "bind": address,
                "advertise": address,
                "api_port": API_PORT,
                "raft_port": RAFT_PORT,
            }
        )
    config = {
        "cluster": {"name": "multihost", "secret": secrets.token_urlsafe(24)},
        "nodes": nodes,
        "data_dir": str(directory / "data" / "{node}"),
        "log_defaults": {"tablets": TABLETS, "replication_factor": 3, "min_insync_replicas": 2},
    }
    path = directory / "multi-host.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture
def machines(tmp_path: Path) -> Iterator[Machines]:
    with NetnsLab(3) as lab:
        config = write_config(lab, tmp_path)
        m = Machines(lab, config, {}, {k: tmp_path / f"n{k}.log" for k in (1, 2, 3)})
        try:
            for k in (1, 2, 3):
                m.start(k)
            wait_until(m.all_ready, 60, "all nodes are ready")
            yield m
        finally:
            m.stop_all()
            m.print_logs()


def test_nodes_advertise_their_own_machine_addresses(machines: Machines) -> None:
    answer = call("GET", f"{machines.url(2)}/v1/cluster")
    status, body = answer.status, answer.body
    assert status == 200, body
    assert sorted(n["id"] for n in body["nodes"]) == ["n1", "n2", "n3"]
    for entry in body["nodes"]:
        k = machines.machine_of(entry["id"])
        assert str(entry["address"]).startswith(machines.lab.address(k)), entry


def test_cluster_keeps_serving_with_a_tablet_leader_partitioned(machines: Machines) -> None:
    create_log(machines.url(1), LOG, TABLETS)
    ledger = Ledger()
    for batch in range(5):
        ledger.produce(machines.url(1), LOG, [f"before-{batch}-{i}" for i in range(20)])
    assert ledger.verify(machines.url(3), LOG, TABLETS) >= 100

    leader, epoch = wait_until(
        lambda: tablet_leader(machines.url(1), LOG, 0), 30, "tablet 0 has a leader"
    )
    cut = machines.machine_of(leader)
    majority = [k for k in (1, 2, 3) if k != cut]
    cut_at = time.monotonic()
    machines.lab.partition(cut)
    assert call("GET", f"{machines.url(cut)}/healthz").status == 200, "still reachable from here"

    def moved() -> tuple[str, int] | None:
        found = tablet_leader(machines.url(majority[0]), LOG, 0)
        return found if found and found[0] != leader and found[1] > epoch else None

    successor, new_epoch = wait_until(moved, 60, f"tablet 0 fails over from {leader}")
    print(
        f"{leader} partitioned; {successor} leads tablet 0 (epoch {new_epoch}) after "
        f"{time.monotonic() - cut_at:.1f} s"
    )

    for batch in range(5):
        target = machines.url(majority[batch % 2])
        ledger.produce(target, LOG, [f"during-{batch}-{i}" for i in range(20)], timeout_s=60)
    assert ledger.verify(machines.url(majority[1]), LOG, TABLETS) >= 200

    machines.lab.heal()
    wait_until(machines.all_ready, 60, "all nodes are ready after the heal")
    ledger.produce(machines.url(cut), LOG, [f"after-{i}" for i in range(20)], timeout_s=60)
    wait_until(
        lambda: converged(machines.urls, LOG, TABLETS), 90, "all replicas have equal digests"
    )
    assert ledger.verify(machines.url(cut), LOG, TABLETS) >= 220
