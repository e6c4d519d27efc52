"""A cluster of local node processes: what ``tabletlog dev up`` runs and client tests start.

Each node is ``python -m node --config CONFIG --node ID --data-dir DATA/ID``, started in its own
session (so a Ctrl-C in the terminal reaches only the parent, which then stops the nodes in
order), with stdout and stderr appended to ``DATA/ID.log``. Stopping is SIGTERM, a grace period,
then SIGKILL.

``generate_config`` writes a config for N nodes on loopback with free ports, for clusters other
than the checked-in ``cluster-configs/local-3.yaml`` and for tests.

Not thread-safe: drive one ``LocalCluster`` from one thread.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml


class ClusterStartError(Exception):
    """Nodes did not become ready; the message names them and quotes their logs' last lines."""


class ConfigUnreadable(Exception):
    """The config file cannot be read or lacks the node list (one-line message)."""


def read_nodes(config_path: Path) -> tuple[str, dict[str, str]]:
    """(cluster name, node id → API ``host:port``) from a cluster config.

    Reads only what starting and watching processes needs; the nodes validate the rest and exit
    with a one-line reason. (The client deliberately does not import the server's config code.)
    """
    try:
        raw = yaml.safe_load(config_path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigUnreadable(f"cannot read config {config_path}: {exc}") from None
    nodes = raw.get("nodes") if isinstance(raw, dict) else None
    if not isinstance(nodes, list) or not nodes:
        raise ConfigUnreadable(f"config {config_path} has no 'nodes' list")
    addresses: dict[str, str] = {}
    for entry in nodes:
        if not isinstance(entry, dict) or "id" not in entry or "api_port" not in entry:
            raise ConfigUnreadable(f"config {config_path}: every node needs id and api_port")
        host = str(entry.get("advertise") or entry.get("host") or "127.0.0.1")
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        addresses[str(entry["id"])] = f"{host}:{entry['api_port']}"
    cluster = raw.get("cluster")
    name = str(cluster.get("name", "tabletlog")) if isinstance(cluster, dict) else "tabletlog"
    return name, addresses


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports the OS considers free right now (bound to port 0, then closed).

    Another process could take one before the node binds it; tests accept that small race.
    """
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def ports_free(ports: Sequence[int], host: str = "127.0.0.1") -> bool:
    """True when every port can be bound on ``host`` now.

    SO_REUSEADDR as the node's servers set it: connections in TIME_WAIT from a cluster that
    just stopped do not make a port busy.
    """
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError:
                return False
    return True


def generate_config(
    path: Path,
    *,
    nodes: int,
    data_dir: Path,
    ports: Sequence[tuple[int, int]] | None = None,
    name: str = "dev",
    log_defaults: Mapping[str, Any] | None = None,
    tuning: Mapping[str, Any] | None = None,
) -> Path:
    """Write a config of ``nodes`` nodes on 127.0.0.1 to ``path``; returns ``path``.

    ``ports`` is one (api_port, raft_port) per node; default: free ports. Log defaults fit the
    size (replication factor up to 3, min in-sync up to 2) unless ``log_defaults`` overrides.
    """
    if ports is None:
        flat = free_ports(2 * nodes)
        ports = [(flat[2 * i], flat[2 * i + 1]) for i in range(nodes)]
    if len(ports) != nodes:
        raise ValueError("give one (api_port, raft_port) pair per node")
    replication = min(3, nodes)
    defaults: dict[str, Any] = {
        "tablets": 3,
        "replication_factor": replication,
        "min_insync_replicas": min(2, replication),
        "fsync": "always",
    }
    defaults.update(log_defaults or {})
    config: dict[str, Any] = {
        "cluster": {"name": name, "secret": secrets.token_hex(16)},
        "nodes": [
            {"id": f"n{i + 1}", "host": "127.0.0.1", "api_port": api, "raft_port": raft}
            for i, (api, raft) in enumerate(ports)
        ],
        "data_dir": str(data_dir / "{node}"),
        "log_defaults": defaults,
    }
    if tuning:
        config["tuning"] = dict(tuning)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


class LocalCluster:
    """The nodes of one config file as child processes. Not thread-safe."""

    def __init__(self, config_path: Path, data_dir: Path, *, python: str | None = None) -> None:
        self.name, self.addresses = read_nodes(config_path)
        self.config_path = config_path
        self.data_dir = data_dir
        self._python = python or sys.executable
        self._processes: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def node_ids(self) -> list[str]:
        return list(self.addresses)

    @property
    def bootstrap(self) -> str:
        """Every node's API address, comma-separated (for ``--bootstrap``)."""
        return ",".join(self.addresses.values())

    def log_path(self, node_id: str) -> Path:
        return self.data_dir / f"{node_id}.log"

    def pid(self, node_id: str) -> int | None:
        process = self._processes.get(node_id)
        return process.pid if process is not None else None

    def exit_code(self, node_id: str) -> int | None:
        """The node's exit status, or None while it runs (or was never started)."""
        process = self._processes.get(node_id)
        return process.poll() if process is not None else None

    def running(self, node_id: str) -> bool:
        process = self._processes.get(node_id)
        return process is not None and process.poll() is None

    def start(self, node_ids: Sequence[str] | None = None) -> None:
        """Start the given nodes (default: all) that are not running."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for node_id in node_ids or self.node_ids:
            if self.running(node_id):
                continue
            argv = [
                self._python,
                "-m",
                "node",
                "--config",
                str(self.config_path),
                "--node",
                node_id,
                "--data-dir",
                str(self.data_dir / node_id),
            ]
            with self.log_path(node_id).open("ab") as log:
                log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {node_id}\n".encode())
                log.flush()
                self._processes[node_id] = subprocess.Popen(  # noqa: S603 (our own argv)
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )

    def is_ready(self, node_id: str, timeout_s: float = 0.5) -> bool:
        """True when the node answers ``GET /readyz`` with 200."""
        host, _, port = self.addresses[node_id].rpartition(":")
        connection = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=timeout_s)
        try:
            connection.request("GET", "/readyz")
            return connection.getresponse().status == 200
        except (OSError, http.client.HTTPException):
            return False
        finally:
            connection.close()

    def not_ready(self, node_ids: Sequence[str] | None = None) -> list[str]:
        return [n for n in node_ids or self.node_ids if not self.is_ready(n)]

    def wait_ready(self, timeout_s: float = 60.0, node_ids: Sequence[str] | None = None) -> None:
        """Block until every given node (default: all) is ready.

        Raises ClusterStartError when a node exits or the time runs out.
        """
        deadline = time.monotonic() + timeout_s
        waiting = list(node_ids or self.node_ids)
        while True:
            self.check_alive(waiting)
            waiting = self.not_ready(waiting)
            if not waiting:
                return
            if time.monotonic() > deadline:
                raise ClusterStartError(
                    f"node(s) {', '.join(waiting)} not ready after {timeout_s:g} s; "
                    + self._tails(waiting)
                )
            time.sleep(0.2)

    def check_alive(self, node_ids: Sequence[str]) -> None:
        """Raise ClusterStartError if one of ``node_ids`` was started and has exited."""
        dead = [n for n in node_ids if n in self._processes and not self.running(n)]
        if dead:
            codes = ", ".join(f"{n} (exit {self.exit_code(n)})" for n in dead)
            raise ClusterStartError(f"node(s) exited: {codes}; " + self._tails(dead))

    def _tails(self, node_ids: Sequence[str]) -> str:
        return "; ".join(f"{n}: {self.log_tail(n, 1) or 'no output'}" for n in node_ids)

    def log_tail(self, node_id: str, lines: int = 20) -> str:
        """The last ``lines`` lines of the node's log (empty when there is none)."""
        try:
            text = self.log_path(node_id).read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def signal(self, node_id: str, signum: int) -> None:
        process = self._processes.get(node_id)
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signum)

    def kill(self, node_id: str) -> None:
        """SIGKILL the node and reap it (a crash, for fail-over tests)."""
        self.signal(node_id, signal.SIGKILL)
        process = self._processes.get(node_id)
        if process is not None:
            process.wait()

    def pause(self, node_id: str) -> None:
        self.signal(node_id, signal.SIGSTOP)

    def resume(self, node_id: str) -> None:
        self.signal(node_id, signal.SIGCONT)

    def stop(self, node_ids: Sequence[str] | None = None, grace_s: float = 10.0) -> None:
        """SIGTERM the nodes together, wait up to ``grace_s``, then SIGKILL what is left."""
        targets = [n for n in node_ids or self.node_ids if n in self._processes]
        for node_id in targets:
            self.resume(node_id)  # a stopped process cannot handle SIGTERM
            self.signal(node_id, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for node_id in targets:
            process = self._processes[node_id]
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
