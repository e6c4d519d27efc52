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

This module is the entry point (``run`` and the CLI). The cluster, its load generators and the
plan of a run are ``bench.tabletlog_harness``; the rows are built by
``bench.tabletlog_produce`` (produce, large batches, one in flight, equal batching, client
``Producer``), ``bench.tabletlog_consume`` and ``bench.tabletlog_failover``; process handles,
CPU meters and row notes live in ``bench.tabletlog_support``.

Run alone: ``python -m bench.tabletlog_bench [--quick] [--json PATH] [--only a,b]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.report import Result, print_table, write_json
from bench.tabletlog_consume import run_consume
from bench.tabletlog_failover import run_failover
from bench.tabletlog_harness import Bench, Plan
from bench.tabletlog_produce import run_client_producer, run_produce
from bench.tabletlog_support import SYSTEM, noise_note

PARTS = ("produce", "large", "latency", "consume", "replicate", "client", "failover")


def run(quick: bool, parts: tuple[str, ...] = PARTS, plan: Plan | None = None) -> list[Result]:
    """Every tabletlog row (the hook ``bench.run_all`` calls); kills what it started."""
    plan = plan or (Plan.quick() if quick else Plan())
    base_dir = Path(tempfile.mkdtemp(prefix="tabletlog-bench-"))
    bench = Bench(plan, base_dir)
    rows: list[Result] = []
    steps: list[tuple[str, Callable[[], list[Result]]]] = [
        ("produce 100 B", lambda: run_produce(bench, 100, parts)),
        ("produce 1 KiB", lambda: run_produce(bench, 1024, parts)),
        (
            "consume",
            lambda: (
                [*run_consume(bench, 100), *run_consume(bench, 1024)] if "consume" in parts else []
            ),
        ),
        ("client", lambda: [run_client_producer(bench)] if "client" in parts else []),
        ("failover", lambda: [run_failover(bench)] if "failover" in parts else []),
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
