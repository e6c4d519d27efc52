"""Nemeses: the faults of DESIGN.md §7, each injected and healed within a bounded time.

Every nemesis picks its target from the cluster's current state (usually the leader of a random
tablet), injects the fault, holds it, heals it, and returns a :class:`Fault` with the run-clock
times of injection and healing. Between faults, :func:`wait_stable` waits until the cluster is
whole again: every node up and ready, every tablet led with its full replica set in sync, and
(when a workload runs) an acknowledged write on every tablet since the heal — so each fault hits
a healthy cluster and the recovery is part of what is measured.

* ``kill-leader``      SIGKILL a tablet leader, wait for a new leader, restart it;
* ``restart-leader``   SIGTERM a tablet leader (controlled shutdown hands leadership off while
                       writes are in flight), start it again: a rolling-restart step;
* ``restart-controller`` SIGTERM the controller node, start it again;
* ``pause-leader``     SIGSTOP a tablet leader for 1–5 s (across the session timeout), SIGCONT;
* ``partition-leader`` cut a tablet leader off from its peers (half the time from the test
                       process too) in network namespaces until a new leader is elected, heal;
* ``kill-all``         SIGKILL every node at once (the log fsyncs always), start them all;
* ``corrupt-follower`` stop (SIGKILL or SIGTERM) one follower of a tablet, flip a bit in or
                       truncate one of its segment files, start it: it must recover from the
                       leader and nothing corrupt may be served;
* ``restart-all``      SIGTERM every node at once, start them all: metadata must survive.
"""

from __future__ import annotations

import os
import random
import signal
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from replication.auth import INTERNAL_TOKEN_HEADER, internal_token
from tests.cluster.harness import SECRET, Cluster, HttpError, http
from tests.faults.checker import Fault
from tests.faults.node_debug import MARKER
from tests.faults.workload import RunClock, Workload, replica_states
from tests.waiting import wait_until

Corruptor = Callable[[Path], str]


class NemesisError(AssertionError):
    """The cluster did not do what the product promises around a fault (liveness, metadata)."""


class NodeCrashed(NemesisError):
    """A node process exited without the test asking it to."""


class NoAnswer(Exception):
    """No node could describe the log right now (a transient state while faults heal)."""


@dataclass
class NemesisContext:
    cluster: Cluster
    log: str
    tablets: int
    rng: random.Random
    clock: RunClock
    workload: Workload | None = None
    failover_timeout_s: float = 30.0
    stable_timeout_s: float = 60.0
    notes: list[str] = field(default_factory=list)
    progress: Path | None = None  # also append every note here as it happens (long runs)

    def note(self, text: str) -> None:
        line = f"t={self.clock():7.2f} {text}"
        self.notes.append(line)
        if self.progress is not None:
            with self.progress.open("a") as f:
                f.write(line + "\n")


class Nemesis(ABC):
    name: ClassVar[str]
    needs_netns: ClassVar[bool] = False

    def available(self, cluster: Cluster) -> str | None:
        """Why this nemesis cannot run on ``cluster`` (None: it can)."""
        if self.needs_netns and cluster.lab is None:
            return "needs a cluster in network namespaces (root and `ip netns`)"
        return None

    @abstractmethod
    def run(self, ctx: NemesisContext) -> Fault:
        """Inject, hold and heal the fault; return when it is healed."""

    def __repr__(self) -> str:
        return self.name


# ---------------------------------------------------------------------- cluster state


def tablets_view(ctx: NemesisContext, exclude: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The tablets of the log as the controller (or another node outside ``exclude``) sees
    them."""
    cluster = ctx.cluster
    controller = cluster.controller()
    candidates = [n for n in cluster.running_nodes() if n not in exclude]
    ordered = ([controller] if controller in candidates else []) + candidates
    last: Exception | None = None
    for node in ordered:
        try:
            tablets: list[dict[str, Any]] = cluster.describe(ctx.log, node)["tablets"]
            return tablets
        except (HttpError, OSError) as exc:
            last = exc
    raise NoAnswer(f"no node outside {list(exclude)} describes {ctx.log}: {last!r}")


def check_no_crash(cluster: Cluster) -> None:
    crashed = cluster.crashed_nodes()
    if crashed:
        codes = {n: cluster.nodes[n].proc.returncode for n in crashed  # type: ignore[union-attr]
                 }
        raise NodeCrashed(f"node process(es) exited on their own: {codes}")


def is_stable(ctx: NemesisContext, since: float | None) -> bool:
    cluster = ctx.cluster
    check_no_crash(cluster)
    if any(not n.running or n.paused for n in cluster.nodes.values()):
        return False
    if not all(cluster.is_ready(n) for n in cluster.nodes):
        return False
    tablets = tablets_view(ctx)
    if len(tablets) != ctx.tablets:
        return False
    for t in tablets:
        if not t["leader"] or set(t["isr"]) != set(t["replicas"]):
            return False
    if since is not None and ctx.workload is not None:
        return all(count > 0 for count in ctx.workload.acked_since(since).values())
    return True


def wait_stable(ctx: NemesisContext, since: float | None = None,
                timeout_s: float | None = None) -> float:
    """Wait until the cluster is whole again (see the module docstring); returns the seconds
    waited. ``since``: also wait for an acknowledged write on every tablet started after it."""
    started = time.monotonic()
    timeout = timeout_s or ctx.stable_timeout_s
    deadline = started + timeout
    while True:
        try:
            if is_stable(ctx, since):
                return time.monotonic() - started
        except NodeCrashed:
            raise
        except (HttpError, OSError, AssertionError, NoAnswer, StopIteration):
            pass
        if time.monotonic() > deadline:
            state = _describe_state(ctx)
            raise NemesisError(f"the cluster is not whole {timeout:.0f} s after the fault "
                               f"was healed: {state}\n{diagnose(ctx)}\n"
                               f"{dump_fetcher_tasks(ctx.cluster)}")
        time.sleep(0.1)


def _describe_state(ctx: NemesisContext) -> str:
    try:
        tablets = tablets_view(ctx)
        shown = [(t["tablet"], t["leader"], t["leader_epoch"], t["isr"]) for t in tablets]
    except (NoAnswer, HttpError, OSError) as exc:
        shown = [repr(exc)]  # type: ignore[list-item]
    acked = ctx.workload.acked_since(ctx.clock() - 5) if ctx.workload else {}
    return (f"running={ctx.cluster.running_nodes()} tablets(tablet, leader, epoch, isr)="
            f"{shown} acked in the last 5 s per tablet={acked}")


def diagnose(ctx: NemesisContext) -> str:
    """Every node's own view of the log's tablets, and what each leader knows of its followers
    (``/internal/tablets``): what a stuck replication looks like from every side."""
    lines = ["diagnosis (each node's view: tablet leader@epoch isr; tablets it leads: "
             "end/hw and followers' fetch offsets):"]
    headers = {INTERNAL_TOKEN_HEADER: internal_token(SECRET)}
    for node_id, node in ctx.cluster.nodes.items():
        if not node.running:
            lines.append(f"  {node_id}: not running")
            continue
        try:
            view = ctx.cluster.describe(ctx.log, node_id)["tablets"]
            seen = " ".join(f"{t['tablet']}:{t['leader']}@{t['leader_epoch']}{t['isr']}"
                            for t in view)
            led = http("GET", f"{node.url}/internal/tablets?log={ctx.log}", timeout_s=5,
                       headers=headers)["tablets"]
            leading = " ".join(f"{t['tablet']}@{t['leader_epoch']} end {t['end_offset']} hw "
                               f"{t['high_watermark']} followers {t['followers']}" for t in led)
            lines.append(f"  {node_id}: sees {seen}; leads {leading or 'nothing'}")
        except (HttpError, OSError, KeyError) as exc:
            lines.append(f"  {node_id}: {exc!r}")
    urls = {n: node.url for n, node in ctx.cluster.nodes.items()}
    for tablet in range(ctx.tablets):
        states = replica_states(urls, ctx.log, tablet, sorted(urls))
        lines.append(f"  tablet {tablet} replicas: " + ", ".join(
            f"{s.node} {s.error}" if s.error else
            f"{s.node} end {s.end_offset} hw {s.high_watermark}" for s in states))
    return "\n".join(lines)


def dump_fetcher_tasks(cluster: Cluster, timeout_s: float = 5.0) -> str:
    """Ask every node run through ``tests.faults.node_debug`` to log its asyncio tasks (SIGUSR1);
    return the replica fetch loops' stacks (the whole dumps are in the node logs)."""
    if "tests.faults.node_debug" not in cluster.node_command:
        return ""
    before: dict[str, int] = {}
    for node_id, node in cluster.nodes.items():
        if node.running and not node.paused and node.proc is not None:
            before[node_id] = node.log_path.read_text(errors="replace").count(MARKER)
            os.kill(node.proc.pid, signal.SIGUSR1)

    def dumped() -> bool:
        return all(cluster.nodes[n].log_path.read_text(errors="replace").count(MARKER) > count
                   for n, count in before.items())

    try:
        wait_until(dumped, timeout_s, "nodes log their asyncio tasks")
    except AssertionError as exc:
        return f"task dumps: {exc}"
    out = ["replica fetch loops (asyncio task stacks; full dumps in the node logs):"]
    for node_id in before:
        text = cluster.nodes[node_id].log_path.read_text(errors="replace")
        dump = text[text.rindex(MARKER):].split("==== end of tasks ====")[0]
        for section in dump.split("\n--- ")[1:]:
            if section.startswith("fetch-from"):
                out.append(f"  {node_id}: --- " + section.rstrip().replace("\n", "\n    "))
    return "\n".join(out)


def pick_leader(ctx: NemesisContext) -> tuple[int, str, int]:
    """A random tablet, its leader and leader epoch."""
    tablet = ctx.rng.randrange(ctx.tablets)
    info = next(t for t in tablets_view(ctx) if t["tablet"] == tablet)
    if not info["leader"]:
        raise NemesisError(f"tablet {tablet} has no leader: {info}")
    return tablet, str(info["leader"]), int(info["leader_epoch"])


def wait_new_leader(ctx: NemesisContext, tablet: int, old: str, old_epoch: int) -> float:
    """Wait until a node other than ``old`` leads ``tablet`` at a newer epoch (asked of the
    nodes other than ``old``); returns the seconds it took."""
    started = time.monotonic()

    def moved() -> bool:
        info = next(t for t in tablets_view(ctx, exclude=[old]) if t["tablet"] == tablet)
        return bool(info["leader"]) and info["leader"] != old \
            and int(info["leader_epoch"]) > old_epoch

    try:
        wait_until(moved, ctx.failover_timeout_s, f"tablet {tablet} fails over from {old}",
                   interval_s=0.05)
    except AssertionError as exc:
        raise NemesisError(f"{exc}; {_describe_state(ctx)}") from None
    return time.monotonic() - started


# ---------------------------------------------------------------------- nemeses


class KillLeader(Nemesis):
    name = "kill-leader"

    def run(self, ctx: NemesisContext) -> Fault:
        tablet, leader, epoch = pick_leader(ctx)
        started = ctx.clock()
        ctx.cluster.kill(leader)
        failover = wait_new_leader(ctx, tablet, leader, epoch)
        time.sleep(ctx.rng.uniform(0.0, 1.5))  # stay down a little longer
        ctx.cluster.start(leader)
        return Fault(self.name, leader, started, ctx.clock(),
                     f"tablet {tablet} failed over in {failover:.2f} s")


class RestartLeader(Nemesis):
    """SIGTERM a tablet leader (a graceful, controlled shutdown: leadership is handed off while
    writes are in flight), then start it again — one step of a rolling restart."""

    name = "restart-leader"

    def run(self, ctx: NemesisContext) -> Fault:
        tablet, leader, _ = pick_leader(ctx)
        started = ctx.clock()
        code = ctx.cluster.stop(leader)
        time.sleep(ctx.rng.uniform(0.0, 1.0))  # stay down a little
        ctx.cluster.start(leader)
        return Fault(self.name, leader, started, ctx.clock(),
                     f"leader of tablet {tablet}; exit code {code}")


class RestartController(Nemesis):
    """SIGTERM the controller node (graceful), then start it again: the controller role must
    move without disturbing the other nodes."""

    name = "restart-controller"

    def run(self, ctx: NemesisContext) -> Fault:
        controller = ctx.cluster.controller()
        if controller is None:
            raise NemesisError("no controller to restart")
        started = ctx.clock()
        code = ctx.cluster.stop(controller)
        time.sleep(ctx.rng.uniform(0.0, 1.0))  # stay down a little
        ctx.cluster.start(controller)
        return Fault(self.name, controller, started, ctx.clock(), f"exit code {code}")


class PauseLeader(Nemesis):
    name = "pause-leader"

    def __init__(self, min_s: float = 1.0, max_s: float = 5.0) -> None:
        self.min_s, self.max_s = min_s, max_s

    def run(self, ctx: NemesisContext) -> Fault:
        tablet, leader, _ = pick_leader(ctx)
        hold = ctx.rng.uniform(self.min_s, self.max_s)
        started = ctx.clock()
        ctx.cluster.pause(leader)
        try:
            time.sleep(hold)  # the fault's duration, not a synchronisation
        finally:
            ctx.cluster.resume(leader)
        return Fault(self.name, leader, started, ctx.clock(),
                     f"leader of tablet {tablet} paused {hold:.1f} s")


class PartitionLeader(Nemesis):
    name = "partition-leader"
    needs_netns = True

    def run(self, ctx: NemesisContext) -> Fault:
        tablet, leader, epoch = pick_leader(ctx)
        from_client = ctx.rng.random() < 0.5
        started = ctx.clock()
        ctx.cluster.partition(leader, from_client=from_client)
        try:
            failover = wait_new_leader(ctx, tablet, leader, epoch)
            time.sleep(ctx.rng.uniform(0.0, 2.0))  # the deposed leader stays cut off a while
        finally:
            ctx.cluster.heal()
        reach = "peers and client" if from_client else "peers"
        return Fault(self.name, leader, started, ctx.clock(),
                     f"cut from {reach}; tablet {tablet} failed over in {failover:.2f} s")


class KillAll(Nemesis):
    name = "kill-all"

    def run(self, ctx: NemesisContext) -> Fault:
        started = ctx.clock()
        ctx.cluster.crash_all()
        time.sleep(ctx.rng.uniform(0.2, 1.5))  # the outage
        ctx.cluster.start_all()
        ctx.cluster.wait_ready(timeout_s=ctx.stable_timeout_s)
        return Fault(self.name, "all", started, ctx.clock())


class RestartAll(Nemesis):
    """SIGTERM every node at once, start them again: the log and its metadata survive."""

    name = "restart-all"

    def run(self, ctx: NemesisContext) -> Fault:
        before = _metadata(ctx)
        started = ctx.clock()
        codes = ctx.cluster.stop_all()
        ctx.cluster.start_all()
        ctx.cluster.wait_ready(timeout_s=ctx.stable_timeout_s)
        healed = ctx.clock()
        after = wait_until(lambda: _metadata(ctx), ctx.stable_timeout_s,
                           f"{ctx.log} is described after the restart")
        if after != before:
            raise NemesisError(f"metadata changed across a whole-cluster restart: before "
                               f"{before}, after {after}")
        bad = {n: c for n, c in codes.items() if c != 0}
        detail = f"exit codes {bad}" if bad else "clean exits"
        return Fault(self.name, "all", started, healed, detail)


def _metadata(ctx: NemesisContext) -> tuple[Any, ...] | None:
    try:
        described = ctx.cluster.describe(ctx.log)
    except (HttpError, OSError):
        return None
    tablets = tuple(sorted((t["tablet"], tuple(t["replicas"])) for t in described["tablets"]))
    return described["name"], tuple(sorted(described["config"].items())), tablets


def bit_flip(rng: random.Random) -> Corruptor:
    """Flip one random bit of one random non-empty segment file (``.log``)."""
    def corrupt(directory: Path) -> str:
        path = _pick_segment(rng, directory)
        size = path.stat().st_size
        position, bit = rng.randrange(size), rng.randrange(8)
        with path.open("r+b") as f:
            f.seek(position)
            byte = f.read(1)[0]
            f.seek(position)
            f.write(bytes([byte ^ (1 << bit)]))
        return f"flipped bit {bit} of byte {position} of {path.name} ({size} bytes)"
    return corrupt


def truncation(rng: random.Random) -> Corruptor:
    """Cut one random non-empty segment file (``.log``) at a random length."""
    def corrupt(directory: Path) -> str:
        path = _pick_segment(rng, directory)
        size = path.stat().st_size
        length = rng.randrange(size)
        with path.open("r+b") as f:
            f.truncate(length)
        return f"truncated {path.name} from {size} to {length} bytes"
    return corrupt


def _pick_segment(rng: random.Random, directory: Path) -> Path:
    segments = sorted(p for p in directory.glob("*.log") if p.stat().st_size > 0)
    if not segments:
        raise NemesisError(f"no non-empty segment in {directory}")
    return rng.choice(segments)


class CorruptFollower(Nemesis):
    """Corrupt one follower's segment of one tablet (a minority: one replica of three)."""

    name = "corrupt-follower"

    def __init__(self, modes: Sequence[str] = ("bitflip", "truncate")) -> None:
        self.modes = tuple(modes)

    def __repr__(self) -> str:
        return self.name if len(self.modes) > 1 else f"{self.name}/{self.modes[0]}"

    def run(self, ctx: NemesisContext) -> Fault:
        tablet = ctx.rng.randrange(ctx.tablets)
        info = next(t for t in tablets_view(ctx) if t["tablet"] == tablet)
        followers = sorted(r for r in info["isr"] if r != info["leader"])
        if not followers:
            raise NemesisError(f"tablet {tablet} has no follower in sync: {info}")
        victim = ctx.rng.choice(followers)
        mode = ctx.rng.choice(self.modes)
        corruptor = bit_flip(ctx.rng) if mode == "bitflip" else truncation(ctx.rng)
        how = ctx.rng.choice(("kill", "stop"))
        role = _role(ctx, tablet, victim)
        started = ctx.clock()
        if how == "kill":
            ctx.cluster.kill(victim)
        else:
            ctx.cluster.stop(victim)
        what = ctx.cluster.corrupt(victim, ctx.log, tablet, corruptor)
        ctx.cluster.start(victim)
        return Fault(f"{self.name}/{mode}", victim, started, ctx.clock(),
                     f"tablet {tablet} ({role} just before the {how}): {what}")


def _role(ctx: NemesisContext, tablet: int, node: str) -> str:
    """``node``'s role in ``tablet`` now (it may have changed since the nemesis chose it)."""
    try:
        info = next(t for t in tablets_view(ctx) if t["tablet"] == tablet)
    except (NoAnswer, StopIteration):
        return "role unknown"
    role = "leader" if info["leader"] == node else "follower"
    return f"{role}, ISR {info['isr']}"


ALL_NEMESES: tuple[Nemesis, ...] = (
    KillLeader(), RestartLeader(), RestartController(), PauseLeader(), PartitionLeader(), KillAll(),
    CorruptFollower(), RestartAll(),
)


def by_name(name: str) -> Nemesis:
    """A nemesis by name; ``corrupt-follower/bitflip`` and ``/truncate`` pick one mode."""
    base, _, mode = name.partition("/")
    if base == CorruptFollower.name and mode:
        if mode not in ("bitflip", "truncate"):
            raise ValueError(f"unknown corruption {mode!r}")
        return CorruptFollower((mode,))
    for nemesis in ALL_NEMESES:
        if nemesis.name == base:
            return nemesis
    raise ValueError(f"unknown nemesis {name!r}; known: {[n.name for n in ALL_NEMESES]}")
