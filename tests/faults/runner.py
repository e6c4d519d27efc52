"""One fault-injection run: a cluster, a log, the workload, a sequence of faults, the checker.

:func:`fault_cluster` starts a 3-node cluster on loopback, or each node in its own network
namespace (``netns=True``, needed by the partition nemesis). :func:`run` creates the log (small
segments, so that closed segments exist to corrupt), starts the workload, injects ``faults``
faults chosen at random (seeded) among ``nemeses``, waits for the cluster to be whole after
each, stops the writers, waits for the replicas to converge, reads everything back, collects
every replica's digest and hands the history to the checker.

A run that breaks down midway (a node crashes, the cluster never heals) still heals what it
can and checks the history so far; the error is kept in :attr:`Outcome.error`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import secrets
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from testkit.cluster import Cluster
from testkit.http import HttpError
from testkit.netns import NetnsLab
from testkit.waiting import wait_until
from tests.faults.checker import History, Report, check
from tests.faults.nemesis import (
    Nemesis,
    NemesisContext,
    NemesisError,
    NoAnswer,
    tablets_view,
    wait_stable,
)
from tests.faults.workload import (
    RunClock,
    Workload,
    WorkloadConfig,
    final_read,
    replica_states,
)

SEED_ENV = "TABLETLOG_FAULT_SEED"


def seed_from_env() -> int:
    """The seed in $TABLETLOG_FAULT_SEED, else a fresh random one (always printed)."""
    raw = os.environ.get(SEED_ENV)
    return int(raw) if raw else secrets.randbelow(2**31)


@contextlib.contextmanager
def fault_cluster(base_dir: Path, *, netns: bool = False, size: int = 3) -> Iterator[Cluster]:
    """A running cluster for fault injection (in network namespaces with ``netns``)."""
    lab_cm: contextlib.AbstractContextManager[NetnsLab | None] = (
        NetnsLab(size) if netns else contextlib.nullcontext()
    )
    with (
        lab_cm as lab,
        Cluster.running(
            base_dir,
            size,
            ready_timeout_s=60,
            lab=lab,
            node_command=("-m", "tests.faults.node_debug"),  # SIGUSR1: dump asyncio tasks
        ) as cluster,
    ):
        yield cluster


@dataclass
class RunConfig:
    nemeses: Sequence[Nemesis]
    faults: int
    seed: int
    log: str = "faults"
    tablets: int = 3
    segment_bytes: int = 16 * 1024
    warmup_s: float = 1.0
    gap_s: tuple[float, float] = (0.3, 1.0)  # workload time between a recovery and the next fault
    settle_s: float = 1.0
    stable_timeout_s: float = 60.0
    converge_timeout_s: float = 60.0
    #: "random": each fault picks a nemesis at random; "cycle": every nemesis once per round,
    #: in a shuffled order.
    schedule: Literal["random", "cycle"] = "random"
    workload: WorkloadConfig = field(default_factory=WorkloadConfig)


@dataclass
class Outcome:
    report: Report
    history: History
    seed: int
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    read_errors: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None and self.report.ok

    def save(self, path: Path) -> Path:
        """Write the history, notes and verdict as JSON (for a post-mortem); returns ``path``."""
        path.write_text(
            json.dumps(
                {
                    "seed": self.seed,
                    "error": self.error,
                    "notes": self.notes,
                    "anomalies": self.report.anomalies(),
                    "examples": dict(self.report.examples),
                    "history": dataclasses.asdict(self.history),
                }
            )
        )
        return path

    def table(self, title: str) -> str:
        text = self.report.table(f"{title} (seed {self.seed}, {self.elapsed_s:.0f} s)")
        if self.read_errors:
            text += f"\n  reader errors (transient, not anomalies): {self.read_errors}"
        if self.error:
            text += f"\n  RUN ERROR: {self.error}"
        return text


def create_log(cluster: Cluster, config: RunConfig) -> None:
    settings: dict[str, Any] = {
        "tablets": config.tablets,
        "replication_factor": 3,
        "min_insync_replicas": 2,
        "segment_bytes": config.segment_bytes,
        "fsync": "always",
    }

    def created() -> bool:
        try:
            cluster.create_log(config.log, **settings)
        except HttpError as exc:
            if exc.code != "already_exists":
                raise
        return True

    wait_until(created, 30, f"log {config.log} is created")
    wait_until(lambda: cluster.in_sync(config.log), 30, f"every tablet of {config.log} is led")


def run(cluster: Cluster, config: RunConfig) -> Outcome:
    """The whole run; never raises for what the cluster does (see Outcome.error)."""
    started = time.monotonic()
    rng = random.Random(config.seed)
    clock = RunClock()
    create_log(cluster, config)
    urls = {n: node.url for n, node in cluster.nodes.items()}
    workload = Workload(
        urls, config.log, config.tablets, seed=config.seed, clock=clock, config=config.workload
    )
    ctx = NemesisContext(
        cluster,
        config.log,
        config.tablets,
        rng,
        clock,
        workload,
        stable_timeout_s=config.stable_timeout_s,
        progress=cluster.base_dir / "progress.log",
    )
    available = [n for n in config.nemeses if n.available(cluster) is None]
    assert available, f"none of {list(config.nemeses)} can run on this cluster"
    history = History()
    error: str | None = None
    workload.start()
    try:
        time.sleep(config.warmup_s)  # let the workload run before the first fault
        wait_stable(ctx, since=0.0)
        for i, nemesis in enumerate(schedule(available, config, rng)):
            ctx.note(f"fault {i + 1}/{config.faults}: {nemesis.name}")
            fault = nemesis.run(ctx)
            history.faults.append(fault)
            ctx.note(
                f"  {fault.kind} {fault.target} held {fault.healed - fault.started:.2f} s"
                f" {fault.detail}"
            )
            waited = wait_stable(ctx, since=fault.healed)
            ctx.note(f"  whole again {waited:.2f} s after healing")
            time.sleep(rng.uniform(*config.gap_s))
        time.sleep(config.settle_s)
    except (NemesisError, AssertionError, HttpError, OSError, NoAnswer) as exc:
        error = f"{type(exc).__name__}: {exc}"
        ctx.note(f"run broke down: {error}")
        _heal_everything(cluster)
    finally:
        workload.stop_writers()
    if error is not None:
        with contextlib.suppress(AssertionError, HttpError, OSError, NoAnswer):
            wait_stable(ctx, timeout_s=config.stable_timeout_s)
    replicas = _converged_replicas(ctx, urls, config.converge_timeout_s)
    final = final_read(urls, config.log, config.tablets)
    workload.finish_readers(final.high_watermark, timeout_s=30)
    history.attempts = list(workload.attempts)
    history.reads = list(workload.reads)
    history.final = final.records
    history.final_start = final.start
    history.final_errors = final.errors
    # The digests again, now that the final read is done (the converged ones were taken before).
    history.replicas = {
        t: replica_states(urls, config.log, t, replicas.get(t, sorted(urls)))
        for t in range(config.tablets)
    }
    if workload.crashed:
        error = (error + "; " if error else "") + f"workload crashed: {workload.crashed}"
    return Outcome(
        check(history),
        history,
        config.seed,
        error,
        ctx.notes,
        dict(workload.read_errors),
        time.monotonic() - started,
    )


def schedule(
    available: Sequence[Nemesis], config: RunConfig, rng: random.Random
) -> Iterator[Nemesis]:
    """The ``config.faults`` nemeses to run, in order."""
    round_: list[Nemesis] = []
    for _ in range(config.faults):
        if config.schedule == "random":
            yield rng.choice(available)
            continue
        if not round_:
            round_ = list(available)
            rng.shuffle(round_)
        yield round_.pop()


def _heal_everything(cluster: Cluster) -> None:
    with contextlib.suppress(Exception):
        cluster.heal()
    for node_id, node in cluster.nodes.items():
        with contextlib.suppress(Exception):
            if node.paused:
                cluster.resume(node_id)
            if not node.running:
                cluster.start(node_id)


def _converged_replicas(
    ctx: NemesisContext, urls: dict[str, str], timeout_s: float
) -> dict[int, list[str]]:
    """Wait (bounded) until each tablet's replicas report equal digests; tablet → replicas."""
    replicas: dict[int, list[str]] = {}

    def converged() -> bool:
        for t in tablets_view(ctx):
            replicas[int(t["tablet"])] = list(t["replicas"])
        for tablet, nodes in replicas.items():
            states = replica_states(urls, ctx.log, tablet, nodes)
            if any(s.error for s in states):
                return False
            if (
                len({(s.start_offset, s.high_watermark, s.end_offset, s.digest) for s in states})
                != 1
            ):
                return False
        return True

    try:
        wait_until(converged, timeout_s, "replicas converge", interval_s=0.2)
    except AssertionError as exc:
        ctx.note(f"replicas did not converge: {exc}")
    return replicas
