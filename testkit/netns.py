"""Network namespaces for tests: N "machines" on one host, each with its own address.

A :class:`NetnsLab` of size N creates, in the root namespace, one Linux bridge with the address
``10.77.<run>.254/24`` and, per machine k (1-based), a network namespace joined to the bridge by a
veth pair, with ``eth0`` = ``10.77.<run>.<k>/24`` and ``lo`` up. The test process (root namespace)
reaches every machine through the bridge; the machines reach each other the same way and nothing
else (no default route, no NAT).

Faults are blackhole routes, installed on both sides so neither direction gets through:
``cut(a, b)``; ``partition(k)`` cuts k from every other machine while the test process still
reaches it; ``partition(k, from_root=True)`` cuts it from the test process too; ``heal()``
removes every cut. Only addresses this lab created are ever routed to.

Names carry a per-run id (``tl<id>n<k>``, ``tl<id>br``, ``tl<id>v<k>``) and the ``<run>`` octet is
chosen under a lock among subnets no interface or route on the host uses, so parallel runs never
clash. Each lab records what it created in ``/run/tabletlog-netns/<id>.json``; :meth:`cleanup`
removes exactly that, and a new lab first removes the leftovers of labs whose process died
(an aborted run). Needs root: see :func:`netns_available`.

Thread-safety: a lab is meant for one test thread; ``run_in`` may be called from any thread.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Self

SUBNET_PREFIX = "10.77"
BRIDGE_OCTET = 254
MAX_MACHINES = 250
STATE_DIR = Path("/run/tabletlog-netns")
_IP_TIMEOUT_S = 10.0


class NetnsError(RuntimeError):
    """An ``ip`` command failed; the message carries its command line and stderr."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        ["ip", *args], capture_output=True, text=True, timeout=_IP_TIMEOUT_S, check=False
    )
    if check and proc.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {proc.stderr.strip() or proc.returncode}")
    return proc


@cache
def netns_available() -> bool:
    """True when this process can create network namespaces and veth pairs (root, ``ip netns``).

    Probes for real (creates and deletes a throwaway namespace and veth pair) because being root
    is not enough inside some containers.
    """
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return False
    probe = f"tlprobe{os.getpid() % 100000}"
    try:
        if _ip("netns", "list", check=False).returncode != 0:
            return False
        if _ip("netns", "add", probe, check=False).returncode != 0:
            return False
        veth = ("link", "add", f"{probe}a", "type", "veth", "peer", "name", f"{probe}b")
        ok = _ip(*veth, check=False).returncode == 0
        _ip("link", "del", f"{probe}a", check=False)
        return ok
    except (OSError, subprocess.TimeoutExpired):
        return False
    finally:
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            _ip("netns", "del", probe, check=False)


@dataclass
class _Created:
    """What one lab created, in creation order; persisted so a later run can sweep it."""

    run_id: str
    pid: int
    subnet_octet: int
    bridge: str | None = None
    namespaces: list[str] = field(default_factory=list)
    host_veths: list[str] = field(default_factory=list)
    # Blackhole routes in the root namespace (``isolate``): the only state outside the lab's
    # own devices and namespaces, so it is recorded to be removable after an aborted run.
    root_blackholes: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def from_json(cls, text: str) -> _Created:
        raw: dict[str, Any] = json.loads(text)
        return cls(**raw)


class NetnsLab:
    """N network namespaces on one bridge. Use as a context manager or call :meth:`cleanup`."""

    def __init__(self, size: int) -> None:
        if not 1 <= size <= MAX_MACHINES:
            raise ValueError(f"size must be between 1 and {MAX_MACHINES}")
        self.size = size
        self.run_id = secrets.token_hex(2)
        self._created: _Created | None = None
        self._cuts: set[tuple[int, int]] = set()

    # -- lifecycle -----------------------------------------------------------------------------

    def create(self) -> Self:
        """Create the bridge and the namespaces; on any failure remove what was made and raise."""
        STATE_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
        with _state_lock():
            sweep_stale()
            octet = _free_subnet_octet()
            self._created = _Created(self.run_id, os.getpid(), octet)
            self._save()
        try:
            self._build()
        except BaseException:
            self.cleanup()
            raise
        return self

    def _build(self) -> None:
        created = self._require()
        bridge = f"tl{self.run_id}br"
        _ip("link", "add", bridge, "type", "bridge")
        created.bridge = bridge
        self._save()
        _ip("addr", "add", f"{self.bridge_address}/24", "dev", bridge)
        _ip("link", "set", bridge, "up")
        for k in range(1, self.size + 1):
            ns, host_veth, peer = self.namespace(k), f"tl{self.run_id}v{k}", f"tl{self.run_id}p{k}"
            _ip("netns", "add", ns)
            created.namespaces.append(ns)
            self._save()
            _ip("link", "add", host_veth, "type", "veth", "peer", "name", peer)
            created.host_veths.append(host_veth)
            self._save()
            _ip("link", "set", peer, "netns", ns)
            _ip("-n", ns, "link", "set", peer, "name", "eth0")
            _ip("-n", ns, "addr", "add", f"{self.address(k)}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("link", "set", host_veth, "master", bridge, "up")

    def cleanup(self) -> None:
        """Remove everything this lab created (idempotent). Kills nothing it did not start."""
        if self._created is None:
            return
        _remove(self._created)
        self._created = None
        self._cuts.clear()

    def __enter__(self) -> Self:
        return self.create()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    # -- addresses and processes ---------------------------------------------------------------

    @property
    def subnet(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(f"{SUBNET_PREFIX}.{self._require().subnet_octet}.0/24")

    @property
    def bridge_address(self) -> str:
        """The root namespace's address on the bridge: where the test process is seen from."""
        return f"{SUBNET_PREFIX}.{self._require().subnet_octet}.{BRIDGE_OCTET}"

    def address(self, k: int) -> str:
        """Machine k's address (k from 1 to size)."""
        self._check_index(k)
        return f"{SUBNET_PREFIX}.{self._require().subnet_octet}.{k}"

    def namespace(self, k: int) -> str:
        """Machine k's namespace name, for ``ip netns exec``."""
        self._check_index(k)
        return f"tl{self.run_id}n{k}"

    def run_in(self, k: int, argv: Sequence[str], **popen: Any) -> subprocess.Popen[bytes]:
        """Start ``argv`` inside machine k's namespace; the Popen's pid is argv's own process.

        ``ip netns exec`` execs argv after entering the namespace, so signals sent to the
        returned process (SIGKILL, SIGSTOP) reach the program itself.
        """
        self._require()
        return subprocess.Popen(["ip", "netns", "exec", self.namespace(k), *argv], **popen)

    def exec_in(self, k: int, argv: Sequence[str], timeout_s: float = 30.0) -> str:
        """Run ``argv`` in machine k's namespace to completion; return stdout, raise on failure."""
        proc = subprocess.run(
            ["ip", "netns", "exec", self.namespace(k), *argv],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        if proc.returncode != 0:
            raise NetnsError(f"{argv[0]} in machine {k} exited {proc.returncode}: {proc.stderr}")
        return proc.stdout

    # -- faults --------------------------------------------------------------------------------

    def cut(self, a: int, b: int) -> None:
        """Drop all traffic between machines a and b (blackhole routes on both sides)."""
        if a == b:
            raise ValueError("cannot cut a machine from itself")
        pair = (min(a, b), max(a, b))
        if pair in self._cuts:
            return
        _ip("-n", self.namespace(a), "route", "add", "blackhole", f"{self.address(b)}/32")
        try:
            _ip("-n", self.namespace(b), "route", "add", "blackhole", f"{self.address(a)}/32")
        except NetnsError:
            _ip("-n", self.namespace(a), "route", "del", "blackhole", f"{self.address(b)}/32")
            raise
        self._cuts.add(pair)

    def partition(self, k: int, *, from_root: bool = False) -> None:
        """Cut machine k from every other machine; the test process still reaches it unless
        ``from_root`` (then the root namespace, i.e. the test process, is cut off too)."""
        for other in range(1, self.size + 1):
            if other != k:
                self.cut(k, other)
        if from_root:
            self.cut_from_root(k)

    def cut_from_root(self, k: int) -> None:
        """Drop all traffic between machine k and the root namespace (the test process)."""
        created = self._require()
        address = self.address(k)
        if address in created.root_blackholes:
            return
        _ip("-n", self.namespace(k), "route", "add", "blackhole", f"{self.bridge_address}/32")
        created.root_blackholes.append(address)
        self._save()
        try:
            _ip("route", "add", "blackhole", f"{address}/32")
        except NetnsError:
            _ip("-n", self.namespace(k), "route", "del", "blackhole", f"{self.bridge_address}/32")
            created.root_blackholes.remove(address)
            self._save()
            raise

    def heal(self) -> None:
        """Remove every cut made by this lab."""
        for a, b in sorted(self._cuts):
            _ip("-n", self.namespace(a), "route", "del", "blackhole", f"{self.address(b)}/32")
            _ip("-n", self.namespace(b), "route", "del", "blackhole", f"{self.address(a)}/32")
            self._cuts.discard((a, b))
        created = self._require()
        for address in list(created.root_blackholes):
            k = int(address.rsplit(".", 1)[1])
            _ip("-n", self.namespace(k), "route", "del", "blackhole", f"{self.bridge_address}/32")
            _ip("route", "del", "blackhole", f"{address}/32")
            created.root_blackholes.remove(address)
            self._save()

    @property
    def cuts(self) -> frozenset[tuple[int, int]]:
        """Pairs of machines cut from each other (the smaller number first)."""
        return frozenset(self._cuts)

    @property
    def cut_from_root_machines(self) -> frozenset[int]:
        """Machines cut from the root namespace."""
        if self._created is None:
            return frozenset()
        return frozenset(int(a.rsplit(".", 1)[1]) for a in self._created.root_blackholes)

    # -- internals -----------------------------------------------------------------------------

    def _require(self) -> _Created:
        if self._created is None:
            raise RuntimeError("the lab is not created (call create() or use it as a context)")
        return self._created

    def _check_index(self, k: int) -> None:
        if not 1 <= k <= self.size:
            raise IndexError(f"machine {k} is not in 1..{self.size}")

    def _save(self) -> None:
        created = self._require()
        path = STATE_DIR / f"{created.run_id}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(created.to_json())
        tmp.replace(path)


def _remove(created: _Created) -> None:
    """Delete exactly the routes, bridge, veths and namespaces listed in ``created``, then its
    record."""
    for address in created.root_blackholes:
        _ip("route", "del", "blackhole", f"{address}/32", check=False)
    # Deleting a namespace destroys the veth end inside it, which destroys the pair.
    for ns in reversed(created.namespaces):
        _ip("netns", "del", ns, check=False)
    for veth in created.host_veths:
        if _ip("link", "show", veth, check=False).returncode == 0:
            _ip("link", "del", veth, check=False)
    if created.bridge is not None:
        _ip("link", "del", created.bridge, check=False)
    with contextlib.suppress(FileNotFoundError):
        (STATE_DIR / f"{created.run_id}.json").unlink()


def sweep_stale() -> list[str]:
    """Remove what labs of dead processes left behind; return their run ids.

    Only namespaces, links and records named in those labs' own records are touched.
    """
    swept: list[str] = []
    if not STATE_DIR.is_dir():
        return swept
    for record in sorted(STATE_DIR.glob("*.json")):
        try:
            created = _Created.from_json(record.read_text())
        except (OSError, ValueError, TypeError):
            continue
        if _alive(created.pid):
            continue
        _remove(created)
        swept.append(created.run_id)
    return swept


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _free_subnet_octet() -> int:
    """A third octet for 10.77.X.0/24 that no lab record, address or route on the host uses."""
    in_use: set[int] = set()
    for record in STATE_DIR.glob("*.json"):
        with contextlib.suppress(OSError, ValueError, TypeError):
            in_use.add(_Created.from_json(record.read_text()).subnet_octet)
    addresses = _ip("-4", "-o", "addr", "show").stdout
    shown = addresses + _ip("-4", "route", "show", "table", "all").stdout
    for word in shown.split():
        if word.startswith(f"{SUBNET_PREFIX}."):
            with contextlib.suppress(ValueError, IndexError):
                in_use.add(int(word.split("/")[0].split(".")[2]))
    candidates = [octet for octet in range(1, 254) if octet not in in_use]
    if not candidates:
        raise NetnsError(f"no free {SUBNET_PREFIX}.X.0/24 subnet left")
    return candidates[secrets.randbelow(len(candidates))]


@contextlib.contextmanager
def _state_lock() -> Iterator[None]:
    with (STATE_DIR / ".lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
