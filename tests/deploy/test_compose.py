"""End-to-end test of compose.yaml + Dockerfile with podman-compose: the product as users run it.

Build the image (offline: wheels from deploy/wheels.sh, the base image from deploy/base-image.sh),
start the three-node cluster, wait until every node is ready and its container healthy, create a
log, produce and consume through the published ports, kill -9 the container of a tablet leader,
see a new leader elected, produce again, check that no acknowledged record was lost, restart the
killed node and see all replicas converge. The cluster and its volumes and network are always
removed at the end.

Skips (with the reason) when podman-compose or the base image is missing, unless
TABLETLOG_REQUIRE_COMPOSE=1 (as in CI), which turns those skips into failures.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from testkit.http import call
from testkit.ports import free_ports
from testkit.waiting import wait_until
from tests.deploy.workload import Ledger, converged, create_log, ready, tablet_leader

pytestmark = [pytest.mark.compose, pytest.mark.timeout(1500)]

REPO = Path(__file__).resolve().parents[2]
BASE_IMAGE = "docker.io/library/python:3.11-slim-bookworm"
IMAGE = "localhost/tabletlog:e2e"
NODES = ("n1", "n2", "n3")
LOG = "e2e"
TABLETS = 3
# The settings the test gives compose through the environment; a .env beside compose.yaml would
# override them under podman-compose 1.0 (it lets .env win over the environment).
CONTROLLED = (
    "TABLETLOG_IMAGE",
    "TABLETLOG_RESTART",
    "TABLETLOG_PUBLISH_ADDRESS",
    *(f"TABLETLOG_{n.upper()}_PORT" for n in NODES),
)


def _unavailable(reason: str) -> None:
    if os.environ.get("TABLETLOG_REQUIRE_COMPOSE") == "1":
        pytest.fail(f"{reason} (TABLETLOG_REQUIRE_COMPOSE=1)")
    pytest.skip(reason)


def _dotenv_overrides() -> list[str]:
    dotenv = REPO / ".env"
    if not dotenv.is_file():
        return []
    keys = {line.split("=", 1)[0].strip() for line in dotenv.read_text().splitlines()}
    return sorted(keys & set(CONTROLLED))


@dataclass
class ComposeCluster:
    """One podman-compose project of compose.yaml; every command bounded in time."""

    project: str
    env: dict[str, str]
    ports: dict[str, int]
    log_dir: Path

    def url(self, node: str) -> str:
        return f"http://127.0.0.1:{self.ports[node]}"

    @property
    def urls(self) -> dict[str, str]:
        return {node: self.url(node) for node in NODES}

    def compose(self, *args: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
        argv = ["podman-compose", "-p", self.project, "-f", str(REPO / "compose.yaml"), *args]
        return _run(argv, self.env, timeout_s, self.log_dir / f"compose-{args[0]}.log")

    def container(self, node: str) -> str:
        """The container of a service, found by compose labels (names differ between tools)."""
        filters = [f"label=com.docker.compose.project={self.project}"]
        filters.append(f"label=com.docker.compose.service={node}")
        argv = ["podman", "ps", "-a", "--format", "{{.Names}}"]
        for f in filters:
            argv += ["--filter", f]
        names = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
        found = names.stdout.split()
        assert len(found) == 1, f"containers of {node}: {found}"
        return found[0]

    def running(self, node: str) -> bool:
        argv = ["podman", "inspect", "--format", "{{.State.Running}}", self.container(node)]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        return proc.stdout.strip() == "true"

    def all_ready(self) -> bool:
        """Every node answers /readyz 200; fails at once if a container has exited."""
        for node in NODES:
            if not self.running(node):
                self.dump_logs()
                pytest.fail(f"the container of {node} exited (its log is printed above)")
        return all(ready(u) for u in self.urls.values())

    def healthy(self, node: str) -> bool:
        """Run the container's healthcheck now (podman has no timer here without systemd)."""
        argv = ["podman", "healthcheck", "run", self.container(node)]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        return proc.returncode == 0 and "unhealthy" not in proc.stdout

    def podman(self, *args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
        return _run(["podman", *args], self.env, timeout_s, self.log_dir / f"podman-{args[0]}.log")

    def dump_logs(self) -> None:
        """Print each container's log tail (shown by pytest when the test fails)."""
        for node in NODES:
            with contextlib.suppress(AssertionError, subprocess.SubprocessError, OSError):
                name = self.container(node)
                proc = subprocess.run(
                    ["podman", "logs", "--tail", "80", name],
                    capture_output=True,
                    text=True,
                    timeout=30,
                    check=False,
                )
                print(f"===== {name} =====\n{proc.stdout}{proc.stderr}")

    def remove(self) -> None:
        """down -v, then remove whatever of this project is left: containers, volumes, network."""
        with contextlib.suppress(subprocess.SubprocessError, OSError, AssertionError):
            self.compose("down", "-v", timeout_s=180)
        label = f"label=io.podman.compose.project={self.project}"
        for kind, listing in (
            ("container", ["ps", "-a", "-q"]),
            ("volume", ["volume", "ls", "-q"]),
            ("network", ["network", "ls", "-q"]),
        ):
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                ids = subprocess.run(
                    ["podman", *listing, "--filter", label],
                    capture_output=True,
                    text=True,
                    timeout=60,
                    check=False,
                ).stdout.split()
                if ids:
                    subprocess.run(
                        ["podman", kind, "rm", "-f", *ids],
                        capture_output=True,
                        timeout=120,
                        check=False,
                    )


def _run(
    argv: list[str], env: dict[str, str], timeout_s: float, log: Path
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
    )
    with log.open("a") as out:
        out.write(f"$ {' '.join(argv)}\n{proc.stdout}{proc.stderr}\n")
    if proc.returncode != 0:
        output = proc.stdout[-3000:] + proc.stderr[-3000:]
        raise AssertionError(f"{' '.join(argv)} exited {proc.returncode}:\n{output}")
    return proc


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeCluster]:
    if shutil.which("podman-compose") is None or shutil.which("podman") is None:
        _unavailable("podman-compose is not installed (deploy/podman-setup.sh installs it)")
    exists = subprocess.run(["podman", "image", "exists", BASE_IMAGE], timeout=60, check=False)
    if exists.returncode != 0:
        _unavailable(f"no {BASE_IMAGE} image (deploy/base-image.sh builds a stand-in)")
    overridden = _dotenv_overrides()
    if overridden:
        pytest.fail(f"{REPO / '.env'} sets {overridden}, which would override the test's own")

    log_dir = tmp_path_factory.mktemp("compose")
    ports = dict(zip(NODES, free_ports(len(NODES)), strict=True))
    env = dict(os.environ)
    env.update(
        {
            "TABLETLOG_SECRET": secrets.token_urlsafe(24),
            "TABLETLOG_IMAGE": IMAGE,
            "TABLETLOG_RESTART": "no",
            "TABLETLOG_PUBLISH_ADDRESS": "127.0.0.1",
            # Keep the Dockerfile's HEALTHCHECK (podman's default OCI format drops it).
            "BUILDAH_FORMAT": "docker",
            **{f"TABLETLOG_{n.upper()}_PORT": str(p) for n, p in ports.items()},
        }
    )
    project = f"tltest{os.getpid()}{secrets.token_hex(2)}"
    c = ComposeCluster(project, env, ports, log_dir)

    started = time.monotonic()
    _run(
        ["bash", "deploy/wheels.sh"], {**env, "PYTHON": sys.executable}, 600, log_dir / "wheels.log"
    )
    c.compose("build", "n1", timeout_s=900)
    built = time.monotonic()
    print(f"wheels + image build: {built - started:.1f} s")
    try:
        c.compose("up", "-d", timeout_s=300)
        wait_until(c.all_ready, 180, "all nodes are ready", interval_s=1.0)
        wait_until(
            lambda: all(c.healthy(n) for n in NODES),
            60,
            "all containers are healthy",
            interval_s=1.0,
        )
        print(f"up to ready and healthy: {time.monotonic() - built:.1f} s")
        yield c
    finally:
        c.dump_logs()
        c.remove()


def test_cluster_is_formed_of_the_three_services(cluster: ComposeCluster) -> None:
    answer = call("GET", f"{cluster.url('n1')}/v1/cluster")
    status, body = answer.status, answer.body
    assert status == 200, body
    assert sorted(n["id"] for n in body["nodes"]) == list(NODES)
    assert body["controller"] in NODES
    for entry in body["nodes"]:
        assert str(entry["address"]).startswith(f"{entry['id']}:"), "addressed by service name"


def test_raft_ports_are_not_published(cluster: ComposeCluster) -> None:
    for i, node in enumerate(NODES, start=1):
        published = cluster.podman("port", cluster.container(node)).stdout.strip().splitlines()
        assert len(published) == 1, published
        assert published[0].startswith(f"{7100 + i}/tcp -> 127.0.0.1:"), published


def test_produce_consume_and_survive_killing_a_tablet_leader(cluster: ComposeCluster) -> None:
    create_log(cluster.url("n1"), LOG, TABLETS)
    ledger = Ledger()
    for batch in range(5):
        ledger.produce(cluster.url("n1"), LOG, [f"before-{batch}-{i}" for i in range(20)])
    assert ledger.verify(cluster.url("n2"), LOG, TABLETS) >= 100

    leader, epoch = wait_until(
        lambda: tablet_leader(cluster.url("n1"), LOG, 0), 30, "tablet 0 has a leader"
    )
    survivors = [n for n in NODES if n != leader]
    killed_at = time.monotonic()
    cluster.podman("kill", "--signal", "KILL", cluster.container(leader))

    def new_leader() -> tuple[str, int] | None:
        found = tablet_leader(cluster.url(survivors[0]), LOG, 0)
        return found if found and found[0] != leader and found[1] > epoch else None

    successor, new_epoch = wait_until(new_leader, 60, f"tablet 0 fails over from {leader}")
    print(
        f"tablet 0: {leader} killed, {successor} leads (epoch {new_epoch}) after "
        f"{time.monotonic() - killed_at:.1f} s"
    )
    assert successor in survivors

    for batch in range(5):
        target = cluster.url(survivors[batch % 2])
        ledger.produce(target, LOG, [f"after-{batch}-{i}" for i in range(20)], timeout_s=60)
    assert ledger.verify(cluster.url(survivors[1]), LOG, TABLETS) >= 200

    restarted_at = time.monotonic()
    cluster.podman("start", cluster.container(leader))
    # It comes back at a new address: peers must re-resolve its name (and give up on the old
    # address: tcp_syn_retries in compose.yaml) for it to rejoin within seconds.
    wait_until(lambda: ready(cluster.url(leader)), 90, f"{leader} is ready again")
    print(f"{leader} restarted, ready after {time.monotonic() - restarted_at:.1f} s")
    wait_until(
        lambda: cluster.healthy(leader),
        60,
        f"{leader}'s container is healthy again",
        interval_s=1.0,
    )
    wait_until(
        lambda: converged(cluster.urls, LOG, TABLETS), 120, "all replicas have equal digests"
    )
    assert ledger.verify(cluster.url(leader), LOG, TABLETS) >= 200
