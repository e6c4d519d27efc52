"""Start and stop a throw-away NATS JetStream cluster on loopback for the peer benchmark.

Why a separate module: the workloads (``bench.nats_peer``) must never leak a ``nats-server``
process, whatever fails. This class owns the processes it starts, remembers their pids, and kills
exactly those (SIGKILL) in ``stop()``, which ``__exit__`` always calls. Ports come from binding
port 0 and the store directories live in a fresh temp dir, so parallel runs cannot collide with
each other or with a system nats-server on 4222.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

from bench.procs import die_with_parent
from testkit.ports import free_ports

SETUP_SCRIPT = Path(__file__).resolve().parent / "setup.sh"
INSTALL_HINT = "apt-get install -y nats-server   (or: bash bench/setup.sh)"


class NatsUnavailableError(RuntimeError):
    """nats-server is not installed and could not be installed; the message says how to."""


def find_nats_server() -> str | None:
    """Path of the nats-server binary; Debian installs it in /usr/sbin, often not on a user PATH."""
    found = shutil.which("nats-server")
    if found:
        return found
    candidate = Path("/usr/sbin/nats-server")
    return str(candidate) if candidate.exists() else None


def ensure_nats_server(auto_install: bool = True) -> str:
    """Return the nats-server path, running bench/setup.sh once if it is missing and allowed.

    The setup script needs root for apt-get; when that fails the error carries the command to run.
    """
    path = find_nats_server()
    if path is None and auto_install and SETUP_SCRIPT.exists():
        print(
            f"[bench] nats-server missing: running {SETUP_SCRIPT} --nats-only",
            file=sys.stderr,
            flush=True,
        )
        proc = subprocess.run(
            ["bash", str(SETUP_SCRIPT), "--nats-only"],
            check=False,
            capture_output=True,
            text=True,
            timeout=600,
        )
        path = find_nats_server()
        if path is None:
            tail = (proc.stdout + proc.stderr).strip()[-800:]
            raise NatsUnavailableError(
                f"nats-server missing and {SETUP_SCRIPT.name} failed "
                f"(rc={proc.returncode}); run: {INSTALL_HINT}\n{tail}"
            )
    if path is None:
        raise NatsUnavailableError(f"nats-server not found; run: {INSTALL_HINT}")
    return path


def nats_server_version(binary: str) -> str:
    """E.g. 'v2.9.10', recorded with the results because JetStream's behaviour changes a lot."""
    out = subprocess.run(
        [binary, "--version"], capture_output=True, text=True, check=False, timeout=10
    )
    return (out.stdout or out.stderr).strip().rsplit(" ", 1)[-1]


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class NatsCluster:
    """``nodes`` nats-server processes forming one JetStream cluster on 127.0.0.1.

    ``gomaxprocs`` sets GOMAXPROCS for every server (on 2 vCPUs, three Go servers with the default
    waste CPU spinning in the scheduler; GOMAXPROCS=1 was ~50% faster here).
    """

    def __init__(
        self, nodes: int = 3, gomaxprocs: int | None = None, binary: str | None = None
    ) -> None:
        self.binary = binary or ensure_nats_server()
        self.names = [f"n{i + 1}" for i in range(nodes)]
        self.gomaxprocs = gomaxprocs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.client_ports: dict[str, int] = {}
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._route_ports: dict[str, int] = {}

    @property
    def dir(self) -> Path:
        """The temp dir holding configs, store dirs and logs (only valid while started)."""
        assert self._tmp is not None, "cluster not started"
        return Path(self._tmp.name)

    def url(self, name: str) -> str:
        """Client URL of one server."""
        return f"nats://127.0.0.1:{self.client_ports[name]}"

    @property
    def urls(self) -> list[str]:
        """Client URLs of all servers, in node order."""
        return [self.url(n) for n in self.names]

    def pids(self) -> list[int]:
        """Pids of the servers still running (for CPU accounting)."""
        return [p.pid for p in self.procs.values() if p.poll() is None]

    def _write_config(self, name: str) -> Path:
        routes = ", ".join(
            f'"nats-route://127.0.0.1:{self._route_ports[o]}"' for o in self.names if o != name
        )
        store = self.dir / name
        conf = self.dir / f"{name}.conf"
        cluster = ""
        if len(self.names) > 1:
            cluster = (
                f"cluster {{\n  name: bench\n"
                f"  listen: 127.0.0.1:{self._route_ports[name]}\n"
                f"  routes: [{routes}]\n}}\n"
            )
        conf.write_text(
            f"server_name: {name}\nlisten: 127.0.0.1:{self.client_ports[name]}\n"
            f'jetstream {{\n  store_dir: "{store}"\n}}\n{cluster}'
        )
        return conf

    def start_node(self, name: str) -> None:
        """Start (or restart on the same store dir) one server."""
        env = os.environ.copy()
        if self.gomaxprocs is not None:
            env["GOMAXPROCS"] = str(self.gomaxprocs)
        conf = self.dir / f"{name}.conf"
        with (self.dir / f"{name}.log").open("ab") as log:
            self.procs[name] = subprocess.Popen(
                die_with_parent([self.binary, "-c", str(conf)]),
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def start(self, timeout: float = 15.0) -> NatsCluster:
        """Write configs, start every server, wait until each accepts client connections."""
        self._tmp = tempfile.TemporaryDirectory(prefix="tabletlog-nats-")
        ports = free_ports(2 * len(self.names))
        for i, name in enumerate(self.names):
            self.client_ports[name] = ports[2 * i]
            self._route_ports[name] = ports[2 * i + 1]
        for name in self.names:
            self._write_config(name)
            self.start_node(name)
        deadline = time.monotonic() + timeout
        for name in self.names:
            while not _port_open(self.client_ports[name]):
                if self.procs[name].poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"nats-server {name} did not start:\n{self.log_tail(name)}")
                time.sleep(0.05)
        return self

    def log_tail(self, name: str, chars: int = 1500) -> str:
        """End of one server's log, for error messages."""
        try:
            return (self.dir / f"{name}.log").read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def kill(self, name: str) -> None:
        """SIGKILL one server that this object started (the failover benchmark's fault)."""
        proc = self.procs.get(name)
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)

    def stop(self) -> None:
        """Kill every server this object started and delete the temp dir. Safe to call twice."""
        for name in list(self.procs):
            try:
                self.kill(name)
            except subprocess.TimeoutExpired:
                pass
        self.procs.clear()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> NatsCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
