"""What a nemesis acts on: the run's context, the errors nemeses raise, the log's tablets.

:class:`NemesisContext` carries the cluster, the log, the seeded random source, the run clock
and (when one runs) the workload, and keeps the run's notes. :func:`tablets_view` reads the
log's tablets from the controller or another node; :func:`describe_state` summarises the
cluster for an error message.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testkit.cluster import Cluster
from testkit.http import HttpError
from tests.faults.workload import RunClock, Workload


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


def describe_state(ctx: NemesisContext) -> str:
    """The running nodes, each tablet's leader, epoch and ISR, and the recent acknowledged
    writes per tablet: the state of the cluster in one line, for an error message."""
    try:
        tablets = tablets_view(ctx)
        shown = [(t["tablet"], t["leader"], t["leader_epoch"], t["isr"]) for t in tablets]
    except (NoAnswer, HttpError, OSError) as exc:
        shown = [repr(exc)]  # type: ignore[list-item]
    acked = ctx.workload.acked_since(ctx.clock() - 5) if ctx.workload else {}
    return (
        f"running={ctx.cluster.running_nodes()} tablets(tablet, leader, epoch, isr)="
        f"{shown} acked in the last 5 s per tablet={acked}"
    )
