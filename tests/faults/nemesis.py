"""Nemeses: the faults of docs/architecture.md#the-promise, injected and healed in bounded time.

Every nemesis picks its target from the cluster's current state (usually the leader of a random
tablet), injects the fault, holds it, heals it, and returns a :class:`Fault` with the run-clock
times of injection and healing. Between faults, :func:`wait_stable` (``tests.faults.stability``)
waits until the cluster is whole again: every node up and ready, every tablet led with its full
replica set in sync, and (when a workload runs) an acknowledged write on every tablet since the
heal — so each fault hits a healthy cluster and the recovery is part of what is measured. What
a nemesis acts on (:class:`NemesisContext`, :func:`tablets_view`) is in
``tests.faults.nemesis_context``.

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

import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from testkit.cluster import Cluster
from testkit.http import HttpError
from testkit.waiting import wait_until
from tests.faults.history import Fault
from tests.faults.nemesis_context import (
    NemesisContext,
    NemesisError,
    NoAnswer,
    NodeCrashed,
    describe_state,
    tablets_view,
)
from tests.faults.stability import dump_fetcher_tasks, wait_stable

__all__ = [
    "ALL_NEMESES",
    "CorruptFollower",
    "Corruptor",
    "KillAll",
    "KillLeader",
    "Nemesis",
    "NemesisContext",
    "NemesisError",
    "NoAnswer",
    "NodeCrashed",
    "PartitionLeader",
    "PauseLeader",
    "RestartAll",
    "RestartController",
    "RestartLeader",
    "bit_flip",
    "by_name",
    "dump_fetcher_tasks",
    "pick_leader",
    "tablets_view",
    "truncation",
    "wait_new_leader",
    "wait_stable",
]

Corruptor = Callable[[Path], str]


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
        return (
            bool(info["leader"]) and info["leader"] != old and int(info["leader_epoch"]) > old_epoch
        )

    try:
        wait_until(
            moved, ctx.failover_timeout_s, f"tablet {tablet} fails over from {old}", interval_s=0.05
        )
    except AssertionError as exc:
        raise NemesisError(f"{exc}; {describe_state(ctx)}") from None
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
        return Fault(
            self.name,
            leader,
            started,
            ctx.clock(),
            f"tablet {tablet} failed over in {failover:.2f} s",
        )


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
        return Fault(
            self.name, leader, started, ctx.clock(), f"leader of tablet {tablet}; exit code {code}"
        )


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
        return Fault(
            self.name,
            leader,
            started,
            ctx.clock(),
            f"leader of tablet {tablet} paused {hold:.1f} s",
        )


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
        return Fault(
            self.name,
            leader,
            started,
            ctx.clock(),
            f"cut from {reach}; tablet {tablet} failed over in {failover:.2f} s",
        )


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
        after = wait_until(
            lambda: _metadata(ctx),
            ctx.stable_timeout_s,
            f"{ctx.log} is described after the restart",
        )
        if after != before:
            raise NemesisError(
                f"metadata changed across a whole-cluster restart: before {before}, after {after}"
            )
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
        return Fault(
            f"{self.name}/{mode}",
            victim,
            started,
            ctx.clock(),
            f"tablet {tablet} ({role} just before the {how}): {what}",
        )


def _role(ctx: NemesisContext, tablet: int, node: str) -> str:
    """``node``'s role in ``tablet`` now (it may have changed since the nemesis chose it)."""
    try:
        info = next(t for t in tablets_view(ctx) if t["tablet"] == tablet)
    except (NoAnswer, StopIteration):
        return "role unknown"
    role = "leader" if info["leader"] == node else "follower"
    return f"{role}, ISR {info['isr']}"


ALL_NEMESES: tuple[Nemesis, ...] = (
    KillLeader(),
    RestartLeader(),
    RestartController(),
    PauseLeader(),
    PartitionLeader(),
    KillAll(),
    CorruptFollower(),
    RestartAll(),
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
