"""A real tabletlog cluster: N ``python -m node`` processes on loopback, for tests and benchmarks.

Ports come from :func:`testkit.ports.free_ports`; every node gets its own data directory and log
file. Verbs in the style of etcd's test network: ``kill`` (SIGKILL), ``stop`` (SIGTERM),
``start``, ``restart``; ``leader_of``, ``controller``; HTTP helpers over :func:`testkit.http.http`.
Every process is killed on exit. Not thread-safe: drive it from one thread.

Fault verbs used by the fault-injection suite (``tests/faults``), in
:mod:`testkit.cluster_faults`: ``pause``/``resume`` (SIGSTOP/SIGCONT), ``crash_all`` (SIGKILL
every node at once), ``stop_all`` (SIGTERM every node at once), ``corrupt`` (run a corruptor on a
stopped node's tablet directory), and — for a cluster created with a
:class:`testkit.netns.NetnsLab` (``Cluster.create(..., lab=lab)``: each node in its own network
namespace) — ``partition``/``heal``. ``crashed_nodes`` names nodes that exited without the
caller asking them to.

Offsets in the answers are the API's: ``offset`` of a record, ``next_offset`` (one past the last
record returned) and ``high_watermark`` (one past the last committed record).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from testkit.cluster_faults import ClusterFaults
from testkit.http import HttpError, http
from testkit.netns import NetnsLab
from testkit.node_process import NodeProcess
from testkit.ports import free_ports
from testkit.waiting import wait_until

__all__ = ["FAST_TUNING", "SECRET", "Cluster", "wait_for_leader"]

REPO_ROOT = Path(__file__).resolve().parents[1]
SECRET = "test-cluster-secret"

#: Timers that fail over quickly on loopback while staying robust on a loaded 2-core machine.
FAST_TUNING: dict[str, int] = {
    "heartbeat_interval_ms": 200,
    "session_timeout_ms": 2500,
    "replica_lag_max_ms": 2500,
    "fetch_wait_max_ms": 200,
    "request_timeout_ms": 8000,
}


@dataclass
class Cluster(ClusterFaults):
    """N node processes sharing one generated config."""

    base_dir: Path
    nodes: dict[str, NodeProcess]
    config_path: Path
    spawn_prefix: Callable[[str], Sequence[str]] = field(default=lambda _n: ())
    faults: list[str] = field(default_factory=list)
    lab: NetnsLab | None = None
    #: What follows the Python executable on a node's command line (a wrapper module may run
    #: the node with test-only hooks, e.g. ``("-m", "tests.faults.node_debug")``).
    node_command: Sequence[str] = ("-m", "node")

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    @contextlib.contextmanager
    def running(
        cls, base_dir: Path, size: int = 3, *, ready_timeout_s: float = 30, **kwargs: Any
    ) -> Iterator[Cluster]:
        """A started, ready cluster (``create``'s keywords); every node is killed on exit.

        When the nodes are not ready within ``ready_timeout_s``, AssertionError says which and
        quotes the tails of their logs.
        """
        cluster = cls.create(base_dir, size, **kwargs)
        try:
            cluster.start_all()
            try:
                cluster.wait_ready(timeout_s=ready_timeout_s)
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{cluster.logs_tail(30)}") from None
            yield cluster
        finally:
            if cluster.lab is not None:
                with contextlib.suppress(Exception):
                    cluster.heal()
            cluster.kill_all()

    @classmethod
    def create(
        cls,
        base_dir: Path,
        size: int = 3,
        *,
        log_defaults: dict[str, Any] | None = None,
        tuning: dict[str, int] | None = None,
        hosts: Sequence[str] | None = None,
        spawn_prefix: Callable[[str], Sequence[str]] | None = None,
        lab: NetnsLab | None = None,
        node_command: Sequence[str] = ("-m", "node"),
    ) -> Cluster:
        """Write the config (free ports, one data dir per node) without starting anything.

        With ``lab`` (a created NetnsLab of at least ``size`` machines), node ``n<k>`` runs in
        machine k's namespace at its address (``hosts`` and ``spawn_prefix`` are derived).
        ``node_command`` is what runs a node after the Python executable (see the field).
        """
        if lab is not None:
            hosts = [lab.address(k) for k in range(1, size + 1)]
            spawn_prefix = _netns_prefix(lab)
        hosts = list(hosts) if hosts else ["127.0.0.1"] * size
        ports = free_ports(2 * size)
        nodes: dict[str, NodeProcess] = {}
        for i in range(size):
            node_id = f"n{i + 1}"
            nodes[node_id] = NodeProcess(
                node_id,
                hosts[i],
                ports[2 * i],
                ports[2 * i + 1],
                base_dir / "data" / node_id,
                base_dir / f"{node_id}.log",
            )
        config = {
            "cluster": {"name": "test", "secret": SECRET},
            "nodes": [
                {"id": n.id, "host": n.host, "api_port": n.api_port, "raft_port": n.raft_port}
                for n in nodes.values()
            ],
            "data_dir": str(base_dir / "data" / "{node}"),
            "log_defaults": {
                "tablets": 3,
                "replication_factor": min(3, size),
                "min_insync_replicas": min(2, size),
                "fsync": "always",
                **(log_defaults or {}),
            },
            "tuning": {**FAST_TUNING, **(tuning or {})},
        }
        base_dir.mkdir(parents=True, exist_ok=True)
        config_path = base_dir / "cluster.yaml"
        config_path.write_text(yaml.safe_dump(config))
        return cls(
            base_dir,
            nodes,
            config_path,
            spawn_prefix or _no_prefix,
            lab=lab,
            node_command=tuple(node_command),
        )

    def start(self, node_id: str) -> None:
        node = self.nodes[node_id]
        assert not node.running, f"{node_id} is already running"
        log_file = node.log_path.open("ab")
        argv = [
            *self.spawn_prefix(node_id),
            sys.executable,
            *self.node_command,
            "--config",
            str(self.config_path),
            "--node",
            node_id,
        ]
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}
        node.proc = subprocess.Popen(
            argv,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            env=env,
            start_new_session=True,
        )
        log_file.close()
        node.paused = False
        node.down_on_purpose = False

    def start_all(self) -> None:
        for node_id in self.nodes:
            self.start(node_id)

    def kill(self, node_id: str) -> None:
        """SIGKILL: the process dies at once, its page cache survives (not a power cut)."""
        node = self.nodes[node_id]
        if node.proc is not None and node.proc.poll() is None:
            node.proc.kill()
            node.proc.wait(10)
        node.paused = False
        node.down_on_purpose = True
        self.faults.append(f"kill {node_id}")

    def stop(self, node_id: str, timeout_s: float = 15.0) -> int | None:
        """SIGTERM and wait for a clean exit; returns the exit code."""
        node = self.nodes[node_id]
        if node.proc is None or node.proc.poll() is not None:
            return node.proc.returncode if node.proc else None
        if node.paused:
            self.resume(node_id)
        node.down_on_purpose = True
        node.proc.send_signal(signal.SIGTERM)
        try:
            return node.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            node.proc.kill()
            node.proc.wait(10)
            raise AssertionError(f"{node_id} did not stop within {timeout_s} s") from None

    def restart(self, node_id: str) -> None:
        self.kill(node_id)
        self.start(node_id)

    def kill_all(self) -> None:
        for node in self.nodes.values():
            if node.proc is not None and node.proc.poll() is None:
                if node.paused:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(node.proc.pid, signal.SIGCONT)
                node.proc.kill()
                node.proc.wait(10)

    def logs_tail(self, lines: int = 60) -> str:
        out = []
        for node in self.nodes.values():
            if node.log_path.exists():
                text = node.log_path.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"===== {node.id} ({node.log_path}) =====\n" + "\n".join(text))
        return "\n".join(out)

    # ------------------------------------------------------------------ queries

    def running_nodes(self) -> list[str]:
        return [n.id for n in self.nodes.values() if n.running and not n.paused]

    def api(
        self, node_id: str | None, method: str, path: str, body: Any = None, **kwargs: Any
    ) -> Any:
        """Call ``path`` on ``node_id`` (None: the first running node)."""
        target = node_id or self.running_nodes()[0]
        return http(method, self.nodes[target].url + path, body, **kwargs)

    def is_ready(self, node_id: str) -> bool:
        try:
            self.api(node_id, "GET", "/readyz", timeout_s=2)
            return True
        except (HttpError, OSError):
            return False

    def wait_ready(self, nodes: Sequence[str] | None = None, timeout_s: float = 30) -> None:
        targets = list(nodes or self.running_nodes())
        wait_until(
            lambda: all(self.is_ready(n) for n in targets),
            timeout_s,
            f"nodes {targets} ready",
            interval_s=0.1,
        )
        wait_until(self.controller, timeout_s, "a controller is elected")

    def controller(self) -> str | None:
        for node_id in self.running_nodes():
            try:
                controller = self.api(node_id, "GET", "/v1/cluster", timeout_s=2)["controller"]
            except (HttpError, OSError):
                continue
            if controller:
                return str(controller)
        return None

    def describe(self, log: str, node_id: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self.api(node_id, "GET", f"/v1/logs/{log}", timeout_s=5)
        return result

    def tablet(self, log: str, tablet: int, node_id: str | None = None) -> dict[str, Any]:
        tablets: list[dict[str, Any]] = self.describe(log, node_id)["tablets"]
        return next(t for t in tablets if t["tablet"] == tablet)

    def leader_of(self, log: str, tablet: int, node_id: str | None = None) -> str | None:
        leader = self.tablet(log, tablet, node_id)["leader"]
        return str(leader) if leader else None

    def leaders(self, log: str, node_id: str | None = None) -> dict[int, str | None]:
        """tablet → its leader (None: none), as ``node_id`` (default: any running node) sees it."""
        return {
            int(t["tablet"]): (str(t["leader"]) if t["leader"] else None)
            for t in self.describe(log, node_id)["tablets"]
        }

    def in_sync(self, log: str, node_id: str | None = None) -> bool:
        """Every tablet has a leader and every replica in its ISR (as ``node_id`` sees it)."""
        tablets = self.describe(log, node_id)["tablets"]
        return all(t["leader"] and set(t["isr"]) == set(t["replicas"]) for t in tablets)

    # ------------------------------------------------------------------ data

    def create_log(self, name: str, node_id: str | None = None, **settings: Any) -> Any:
        return self.api(node_id, "POST", "/v1/logs", {"name": name, **settings})

    def produce(
        self,
        log: str,
        records: list[dict[str, Any]],
        *,
        acks: str = "all",
        node_id: str | None = None,
        timeout_s: float = 15,
    ) -> list[dict[str, int]]:
        reply = self.api(
            node_id,
            "POST",
            f"/v1/logs/{log}/records",
            {"records": records, "acks": acks},
            timeout_s=timeout_s,
        )
        offsets: list[dict[str, int]] = reply["offsets"]
        return offsets

    def read_all(
        self, log: str, tablet: int, *, node_id: str | None = None, start: int = 0
    ) -> list[dict[str, Any]]:
        """Every committed record of a tablet from ``start``, as the JSON API gives them
        (non-UTF-8 keys and values come as ``key_b64``/``value_b64``)."""
        records: list[dict[str, Any]] = []
        offset = start
        while True:
            reply = self.api(
                node_id,
                "GET",
                f"/v1/logs/{log}/tablets/{tablet}/records?offset={offset}&max_records=10000",
                timeout_s=10,
            )
            records.extend(reply["records"])
            if reply["next_offset"] >= reply["high_watermark"] or not reply["records"]:
                return records
            offset = reply["next_offset"]

    def replica_view(self, log: str, tablet: int, replica: str) -> dict[str, Any]:
        result: dict[str, Any] = self.api(
            replica, "GET", f"/v1/logs/{log}/tablets/{tablet}/replicas/{replica}", timeout_s=10
        )
        return result

    def digests_agree(self, log: str, tablet: int, replicas: Sequence[str]) -> bool:
        views = [self.replica_view(log, tablet, r) for r in replicas]
        first = views[0]
        return all(
            v["digest"] == first["digest"] and v["high_watermark"] == first["high_watermark"]
            for v in views
        )


def _no_prefix(_node_id: str) -> Sequence[str]:
    return ()


def _netns_prefix(lab: NetnsLab) -> Callable[[str], Sequence[str]]:
    def prefix(node_id: str) -> Sequence[str]:
        return ("ip", "netns", "exec", lab.namespace(int(node_id.removeprefix("n"))))

    return prefix


def wait_for_leader(
    cluster: Cluster, log: str, tablet: int, *, exclude: Sequence[str] = (), timeout_s: float = 20
) -> str:
    """Wait until a running node outside ``exclude`` leads the tablet; return its id."""

    def leader() -> str | None:
        found = cluster.leader_of(log, tablet)
        return (
            found if found and found not in exclude and found in cluster.running_nodes() else None
        )

    return wait_until(leader, timeout_s, f"a new leader for {log}/{tablet} outside {exclude}")
