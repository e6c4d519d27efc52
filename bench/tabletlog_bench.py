"""tabletlog on the benchmark's workloads: 3 nodes on loopback, RF=3, min ISR 2, fsync always.

The hook ``run(quick)`` that ``bench.run_all`` calls. It starts a real cluster with the test
harness (``testkit.cluster``: ``python -m node`` processes, product default timers),
creates one log per workload, and drives the load from separate processes
(``bench.tabletlog_load``) so that the load generator's CPU is its own. Every acknowledgement is
``acks=all``: the batch is fsynced on every in-sync replica before the answer.

Workloads (rows):

* produce 100 B / 1 KiB, pre-built batches to the 3 tablet leaders (on 3 different nodes) over
  keep-alive connections: ~1024 records in flight (the key NATS's window-1024 rows share; one
  341-record request per tablet was the fastest way to split them) and the best batching found
  (1000-record batches, 8 requests in flight per tablet, for 100 B);
* large batches (1 MiB of 1 KiB records): payload MB/s against the disk's sequential write;
* one request in flight: p50/p99 of single-record produces to one leader (>= 1000 samples);
* consume one tablet from offset 0 to its end, decoding every record (raw endpoint with the next
  fetch pipelined, and the Python client's ``Consumer``);
* failover: kill -9 of a tablet leader -> first acknowledged write (``bench.tabletlog_failover``);
* equal batching with pysyncobj: 100 records per request, many requests in flight;
* the Python client's ``Producer`` (idempotent, 5 ms linger) sending 100 B records in a loop;
* a note row: the commit measured and how busy the shared machine was meanwhile.

Process handles, CPU meters and row notes live in ``bench.tabletlog_support``.

Run alone: ``python -m bench.tabletlog_bench [--quick] [--json PATH] [--only a,b]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import tabletlog_failover
from bench.procs import die_with_parent
from bench.report import (
    FAILOVER,
    MACHINE_SEQ_WRITE_FSYNC,
    Result,
    consume_key,
    latency_ms,
    median,
    print_table,
    produce_key,
    replicate_key,
    size_label,
    write_json,
)
from bench.tabletlog_support import (
    SYSTEM,
    CpuMeter,
    LoadWorker,
    cpu_fields,
    cpu_note,
    noise_note,
)
from node.config import Tuning
from testkit.cluster import Cluster
from testkit.http import HttpError
from testkit.waiting import wait_until

PARTS = ("produce", "large", "latency", "consume", "replicate", "client", "failover")


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


# ------------------------------------------------------------------------ the benchmark


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

    # -------------------------------------------------------------- helpers

    def node_pids(self) -> list[int]:
        return [n.proc.pid for n in self.cluster.nodes.values() if n.proc and n.running]

    def address(self, node_id: str) -> str:
        return self.cluster.nodes[node_id].url.removeprefix("http://")

    @contextlib.contextmanager
    def log(self, name: str, tablets: int = 3) -> Iterator[list[dict[str, Any]]]:
        """Create a log, wait until each tablet has a leader and a full ISR, yield the produce
        targets (leader address per tablet), delete the log afterwards (disk space)."""
        self.cluster.create_log(name, tablets=tablets)
        wait_until(lambda: self._in_sync(name), 30, f"log {name}: a full ISR on every tablet")
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

    def _in_sync(self, name: str) -> bool:
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

    def produce_row(
        self,
        name: str,
        key: str,
        size: int,
        cfg: ProduceConfig,
        r: dict[str, Any],
        note: str = "",
        machine_ref: str | None = None,
    ) -> Result:
        p50, p99 = latency_ms(r["latencies"])
        notes = [cfg.describe(), f"{cfg.window} records in flight", note, cpu_note(r)]
        if r["errors"]:
            notes.append(f"errors {r['errors']}")
        return Result(
            name,
            SYSTEM,
            key,
            msgs_per_s=r["rate"],
            mb_per_s=r["rate"] * size / 1e6,
            p50_ms=p50,
            p99_ms=p99,
            notes="; ".join(n for n in notes if n),
            machine_ref=machine_ref,
            extra={
                "config": dataclasses.asdict(cfg),
                "records": r["records"],
                "seconds": r["seconds"],
                "errors": r["errors"],
                "cpu": cpu_fields(r),
            },
        )

    # -------------------------------------------------------------- workloads

    def run_produce(self, size: int, parts: tuple[str, ...]) -> list[Result]:
        p = self.plan
        rows: list[Result] = []
        with self.log(f"produce-{size_label(size)}") as targets:
            if "produce" in parts:
                cfg = p.w1024
                r = self.produce(targets, size, cfg)
                rows.append(
                    self.produce_row(
                        f"produce {size} B, ~1024 records in flight",
                        produce_key(size, 1024),
                        size,
                        cfg,
                        r,
                        "per-request p50/p99",
                    )
                )
                cfg = p.best[size]
                r = self.produce(targets, size, cfg)
                rows.append(
                    self.produce_row(
                        f"produce {size} B, best config",
                        produce_key(size, cfg.window),
                        size,
                        cfg,
                        r,
                        "best batching found",
                    )
                )
            if "replicate" in parts and size == 100:
                cfg = p.equal
                r = self.produce(targets, size, cfg)
                rows.append(
                    self.produce_row(
                        "100 records/request, equal batching with pysyncobj",
                        replicate_key(1000, 100),
                        size,
                        cfg,
                        r,
                        f"actual window {cfg.in_flight * cfg.tablets} requests (pysyncobj: 1000 "
                        "commands) over HTTP from another process, with fsync",
                    )
                )
            if "large" in parts and size == 1024:
                cfg = p.large
                r = self.produce(targets, size, cfg)
                rows.append(
                    self.produce_row(
                        "large batches: 1 MiB of 1 KiB records",
                        "produce 1KiB in 1MiB batches",
                        size,
                        cfg,
                        r,
                        "",
                        machine_ref=MACHINE_SEQ_WRITE_FSYNC,
                    )
                )
            if "latency" in parts:
                rows.append(self.run_latency(targets[0], size))
        return rows

    def run_latency(self, target: dict[str, Any], size: int) -> Result:
        p = self.plan
        meter = CpuMeter(self.node_pids())
        a = self.workers[0].call(
            {
                "op": "latency",
                "target": target,
                "size": size,
                "samples": p.latency_samples,
                "min_samples": 1000,
                "max_s": p.latency_max_s,
            },
            120,
        )
        cpu = {"loadgen_cpu": a["cpu_pct"], **meter.read()}
        lat = a["latencies"]
        p50, p99 = latency_ms(lat)
        notes = f"{len(lat)} samples, 1 record per request, to the leader; " + cpu_note(cpu)
        if a["errors"]:
            notes += f"; errors {a['errors']}"
        return Result(
            f"produce {size} B, 1 request in flight",
            SYSTEM,
            produce_key(size, 1),
            msgs_per_s=len(lat) / a["seconds"],
            mb_per_s=len(lat) * size / a["seconds"] / 1e6,
            p50_ms=p50,
            p99_ms=p99,
            notes=notes,
            extra={"samples": len(lat), "cpu": cpu},
        )

    def run_consume(self, size: int) -> list[Result]:
        count = self.plan.fill[size]
        rows: list[Result] = []
        with self.log(f"consume-{size_label(size)}", tablets=1) as targets:
            fill = self.produce(targets, size, ProduceConfig(1000, 8, 1), max_records=count)
            end = fill["records"]
            fill_note = (
                f"tablet filled with {end} records at {fill['rate']:,.0f}/s "
                "(1000-record batches x 8)"
            )
            target = targets[0]
            for mode, max_bytes, label in (
                ("pipelined", 4 << 20, "raw endpoint, pipelined"),
                ("client", 1 << 20, "client Consumer"),
            ):
                meter = CpuMeter(self.node_pids())
                a = self.workers[0].call(
                    {
                        "op": "consume",
                        "address": target["address"],
                        "log": target["log"],
                        "tablet": 0,
                        "end": end,
                        "max_bytes": max_bytes,
                        "mode": mode,
                        "max_s": 30,
                    },
                    120,
                )
                cpu = {"loadgen_cpu": a["cpu_pct"], **meter.read()}
                note = (
                    f"{label}, max_bytes {max_bytes >> 20} MiB, every record decoded "
                    f"(iter_records, CRC checked); {a['records']} of {end}; " + cpu_note(cpu)
                )
                rows.append(
                    Result(
                        f"consume {size} B, {label}",
                        SYSTEM,
                        consume_key(size),
                        msgs_per_s=a["records"] / a["seconds"],
                        mb_per_s=a["bytes"] / a["seconds"] / 1e6,
                        notes=f"{note}; {fill_note}",
                        extra={**a, "fill_rate": fill["rate"], "cpu": cpu},
                    )
                )
        return rows

    def run_client_producer(self) -> Result:
        p = self.plan
        with self.log("client-producer") as targets:
            meter = CpuMeter(self.node_pids())
            bootstrap = sorted({t["address"] for t in targets})
            a = self.workers[0].call(
                {
                    "op": "client_producer",
                    "bootstrap": bootstrap,
                    "log": targets[0]["log"],
                    "size": 100,
                    "linger_ms": 5,
                    "warmup_s": p.warmup_s,
                    "duration_s": p.duration_s,
                },
                180,
            )
            cpu = {"loadgen_cpu": a["cpu_pct"], **meter.read()}
        rate = a["records"] / a["seconds"]
        p50, p99 = latency_ms(a.pop("batch_latencies"))
        notes = (
            f"client.Producer idempotent, linger 5 ms, <= 5 batches in flight per tablet, 3 "
            f"tablets, {a['records_per_batch']:.0f} records/batch, batch ack p50/p99 "
            f"{p50 or 0:.0f}/{p99 or 0:.0f} ms; " + cpu_note(cpu)
        )
        if a["failed"] or a["retries"]:
            notes += f"; {a['failed']} failed, {a['retries']} retries"
        return Result(
            "Python client Producer, 100 B",
            SYSTEM,
            "produce 100B client Producer",
            msgs_per_s=rate,
            mb_per_s=rate * 100 / 1e6,
            notes=notes,
            extra={**a, "cpu": cpu},
        )

    def run_failover(self) -> Result:
        p = self.plan
        trials: list[dict[str, Any]] = []
        name = "failover"
        self.cluster.create_log(name, tablets=3)
        deadline = time.monotonic() + 30
        while not self._in_sync(name) and time.monotonic() < deadline:
            time.sleep(0.05)
        for k in range(p.failover_trials):
            # every other trial kills the controller's node (a tablet leader there, if any):
            # tablet failover plus controller failover is the worst case
            trials.append(
                asyncio.run(
                    tabletlog_failover.trial(
                        self.cluster,
                        name,
                        f"t{k}",
                        controller_leader=k % 2 == 1,
                        pre_kill_s=p.failover_pre_kill_s,
                        post_s=p.failover_post_s,
                    )
                )
            )
        times = [t["unavail_s"] for t in trials]
        ok = [t for t in times if t != float("inf")]
        lost = sum(t["lost"] for t in trials)
        dups = sum(t["duplicates"] for t in trials)
        ctl = [t["unavail_s"] for t in trials if t["was_controller"]]
        other = [t["unavail_s"] for t in trials if not t["was_controller"]]
        split = (
            f"victim also the controller: median {median(ctl):.2f} s ({len(ctl)}), "
            f"not: {median(other):.2f} s ({len(other)})"
        )
        notes = (
            f"{len(trials)} trials: {' / '.join(f'{t:.2f}' for t in times)} s; p99 column "
            f"= max; {split}; writer 1 in flight, re-routes through any node; "
            f"{sum(t['acked'] for t in trials)} acked, {lost} lost, {dups} duplicates; "
            f"rejoin {median(t['rejoin_s'] for t in trials):.1f} s median"
        )
        return Result(
            "kill -9 tablet leader -> first ack",
            SYSTEM,
            FAILOVER,
            p50_ms=median(ok) * 1e3 if ok else None,
            p99_ms=max(times) * 1e3,
            notes=notes,
            extra={"trials": trials},
        )


def run(quick: bool, parts: tuple[str, ...] = PARTS, plan: Plan | None = None) -> list[Result]:
    """Every tabletlog row (the hook ``bench.run_all`` calls); kills what it started."""
    plan = plan or (Plan.quick() if quick else Plan())
    base_dir = Path(tempfile.mkdtemp(prefix="tabletlog-bench-"))
    bench = Bench(plan, base_dir)
    rows: list[Result] = []
    steps: list[tuple[str, Callable[[], list[Result]]]] = [
        ("produce 100 B", lambda: bench.run_produce(100, parts)),
        ("produce 1 KiB", lambda: bench.run_produce(1024, parts)),
        (
            "consume",
            lambda: (
                [*bench.run_consume(100), *bench.run_consume(1024)] if "consume" in parts else []
            ),
        ),
        ("client", lambda: [bench.run_client_producer()] if "client" in parts else []),
        ("failover", lambda: [bench.run_failover()] if "failover" in parts else []),
    ]
    load_before = os.getloadavg()[0]
    try:
        bench.start()
        for label, step in steps:
            t0 = time.monotonic()
            rows.extend(step())
            print(
                f"[tabletlog] {label}: {time.monotonic() - t0:.1f} s", file=sys.stderr, flush=True
            )
    except BaseException:
        print(bench.cluster.logs_tail(30), file=sys.stderr)
        raise
    finally:
        bench.close()
        shutil.rmtree(base_dir, ignore_errors=True)
    for note in bench.notes:
        rows.append(Result("note", SYSTEM, "-", notes=note))
    rows.append(noise_note(rows, load_before, os.getloadavg()[0]))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="tabletlog benchmark (3 nodes, RF=3, acks=all)")
    ap.add_argument("--quick", action="store_true", help="about 1 minute instead of about 3")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    ap.add_argument("--only", default=",".join(PARTS), help=f"comma list from {','.join(PARTS)}")
    ap.add_argument("--workers", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    parts = tuple(s.strip() for s in args.only.split(",") if s.strip())
    plan = Plan.quick() if args.quick else Plan()
    if args.workers:
        plan = dataclasses.replace(plan, workers=args.workers)
    t0 = time.monotonic()
    rows = run(args.quick, parts, plan)
    print_table(rows, title=f"tabletlog ({time.monotonic() - t0:.0f} s)")
    if args.json is not None:
        write_json(rows, args.json, {"quick": args.quick, "parts": parts})
    return 0


if __name__ == "__main__":
    sys.exit(main())
