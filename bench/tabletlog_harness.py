"""What every tabletlog workload runs on: the plan of a run, the cluster and its load generators.

``Plan`` bounds one run in time (full ~3 min, ``Plan.quick()`` ~1 min) and names the produce
configurations measured. ``Bench`` starts a real 3-node cluster with the test harness
(``testkit.cluster``: ``python -m node`` processes, product default timers rather than the
tests' fast ones) and the ``bench.tabletlog_load`` processes, creates and deletes the logs of
the workloads, and deals a windowed produce over the load generators. The workloads themselves
are functions taking a ``Bench`` (``bench.tabletlog_produce``, ``bench.tabletlog_consume``,
``bench.tabletlog_failover``); ``bench.tabletlog_bench`` runs them in order.

Not thread-safe: one orchestrator thread drives a ``Bench`` (each load generator answers one
command at a time).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.procs import die_with_parent
from bench.tabletlog_support import CpuMeter, LoadWorker
from node.config import Tuning
from testkit.cluster import Cluster
from testkit.http import HttpError
from testkit.waiting import wait_until


@dataclass(frozen=True)
class ProduceConfig:
    """``batch`` records per request, ``in_flight`` requests per tablet, over ``tablets``."""

    batch: int
    in_flight: int
    tablets: int = 3

    @property
    def window(self) -> int:
        """Records in flight over all tablets."""
        return self.batch * self.in_flight * self.tablets

    def describe(self) -> str:
        plural = "s" if self.in_flight != 1 else ""
        return (
            f"{self.tablets} tablets x {self.in_flight} request{plural} in flight x "
            f"{self.batch} records"
        )


@dataclass(frozen=True)
class Plan:
    """Time bounds of one run (full ~3 min, quick ~1 min)."""

    warmup_s: float = 1.0
    duration_s: float = 4.0
    latency_samples: int = 1500
    latency_max_s: float = 10.0
    fill: dict[int, int] = field(default_factory=lambda: {100: 500_000, 1024: 150_000})
    failover_trials: int = 5
    failover_pre_kill_s: float = 1.0
    failover_post_s: float = 0.3
    workers: int = 1
    # ~1024 records in flight: one request per tablet was the fastest split (171 x 2 and
    # 85 x 4 were 15-40% slower: each request costs a replication round)
    w1024: ProduceConfig = ProduceConfig(341, 1)
    best: dict[int, ProduceConfig] = field(
        default_factory=lambda: {100: ProduceConfig(1000, 8), 1024: ProduceConfig(256, 8)}
    )
    large: ProduceConfig = ProduceConfig(1024, 2)  # 1 MiB batches of 1 KiB records
    equal: ProduceConfig = ProduceConfig(100, 64)  # pysyncobj's 100 payloads per command

    @classmethod
    def quick(cls) -> Plan:
        return cls(
            warmup_s=0.5,
            duration_s=1.5,
            latency_samples=1000,
            latency_max_s=6.0,
            fill={100: 200_000, 1024: 50_000},
            failover_trials=3,
            failover_pre_kill_s=0.5,
        )


class Bench:
    """A running cluster plus load generators; ``close`` kills every process it started."""

    def __init__(self, plan: Plan, base_dir: Path) -> None:
        self.plan = plan
        tuning = dataclasses.asdict(Tuning())  # what a user gets, not the tests' fast timers
        self.cluster = Cluster.create(
            base_dir, 3, tuning=tuning, spawn_prefix=lambda _n: die_with_parent([])
        )
        self.workers: list[LoadWorker] = []
        self.notes: list[str] = []

    def start(self) -> None:
        self.cluster.start_all()
        self.cluster.wait_ready(timeout_s=60)
        self.workers = [LoadWorker() for _ in range(max(self.plan.workers, 1))]

    def close(self) -> None:
        for w in self.workers:
            w.close()
        self.cluster.kill_all()

    def node_pids(self) -> list[int]:
        return [n.proc.pid for n in self.cluster.nodes.values() if n.proc and n.running]

    def address(self, node_id: str) -> str:
        return self.cluster.nodes[node_id].url.removeprefix("http://")

    @contextlib.contextmanager
    def log(self, name: str, tablets: int = 3) -> Iterator[list[dict[str, Any]]]:
        """Create a log, wait until each tablet has a leader and a full ISR, yield the produce
        targets (leader address per tablet), delete the log afterwards (disk space)."""
        self.cluster.create_log(name, tablets=tablets)
        wait_until(lambda: self.in_sync(name), 30, f"log {name}: a full ISR on every tablet")
        leaders = self.cluster.leaders(name)
        if len({leaders[t] for t in range(tablets)}) < min(tablets, 3):
            self.notes.append(f"log {name}: leaders {leaders} not on distinct nodes")
        targets = [
            {
                "address": self.address(str(leaders[t])),
                "log": name,
                "tablet": t,
                "leader": leaders[t],
            }
            for t in range(tablets)
        ]
        try:
            yield targets
        finally:
            with contextlib.suppress(HttpError, OSError):
                self.cluster.api(None, "DELETE", f"/v1/logs/{name}", timeout_s=30)

    def in_sync(self, name: str) -> bool:
        """Every tablet of log ``name`` has a full ISR; False while the cluster cannot say."""
        try:
            return self.cluster.in_sync(name)
        except (HttpError, OSError, KeyError):
            return False

    def produce(
        self, targets: list[dict[str, Any]], size: int, cfg: ProduceConfig, *, max_records: int = 0
    ) -> dict[str, Any]:
        """Windowed produce spread over the workers (tablets dealt round robin)."""
        p = self.plan
        workers = self.workers[: max(1, min(len(self.workers), len(targets)))]
        meter = CpuMeter(self.node_pids())
        base: dict[str, Any] = {
            "op": "produce",
            "size": size,
            "batch_records": cfg.batch,
            "in_flight": cfg.in_flight,
            "warmup_s": 0 if max_records else p.warmup_s,
            "duration_s": 120 if max_records else p.duration_s,
            "max_records": max_records // len(workers) if max_records else 0,
        }
        for k, w in enumerate(workers):
            w.send({**base, "targets": targets[k :: len(workers)]})
        answers = [w.receive(180) for w in workers]
        out: dict[str, Any] = {
            "records": sum(a["records"] for a in answers),
            "rate": sum(a["records"] / a["seconds"] for a in answers),
            "latencies": [x for a in answers for x in a["latencies"]],
            "errors": {k: v for a in answers for k, v in a["errors"].items()},
            "loadgen_cpu": sum(a["cpu_pct"] for a in answers),
            **meter.read(),
            "seconds": max(a["seconds"] for a in answers),
        }
        return out
