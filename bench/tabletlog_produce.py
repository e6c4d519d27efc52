"""The tabletlog produce rows: throughput and latency of ``acks=all`` writes.

* produce 100 B / 1 KiB, pre-built batches to the 3 tablet leaders (on 3 different nodes) over
  keep-alive connections: ~1024 records in flight and the best batching found;
* equal batching with pysyncobj: 100 records per request, many requests in flight (100 B);
* large batches (1 MiB of 1 KiB records): payload MB/s against the disk's sequential write;
* one request in flight: p50/p99 of single-record produces to one leader (>= 1000 samples);
* the Python client's ``Producer`` (idempotent, 5 ms linger) sending 100 B records in a loop,
  bound by the client's CPU on purpose: that is what a user gets.

Each function takes the running ``Bench`` (``bench.tabletlog_harness``) and returns its rows;
the load itself runs in the ``bench.tabletlog_load`` processes.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from bench.report import (
    MACHINE_SEQ_WRITE_FSYNC,
    Result,
    latency_ms,
    produce_key,
    replicate_key,
    size_label,
)
from bench.tabletlog_harness import Bench, ProduceConfig
from bench.tabletlog_support import SYSTEM, CpuMeter, cpu_fields, cpu_note


def produce_row(
    name: str,
    key: str,
    size: int,
    cfg: ProduceConfig,
    r: dict[str, Any],
    note: str = "",
    machine_ref: str | None = None,
) -> Result:
    """The row of one windowed produce (``Bench.produce``'s answer ``r``)."""
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


def run_produce(bench: Bench, size: int, parts: tuple[str, ...]) -> list[Result]:
    """The produce rows of ``parts`` for records of ``size`` bytes, on one fresh log."""
    p = bench.plan
    rows: list[Result] = []
    with bench.log(f"produce-{size_label(size)}") as targets:
        if "produce" in parts:
            cfg = p.w1024
            r = bench.produce(targets, size, cfg)
            rows.append(
                produce_row(
                    f"produce {size} B, ~1024 records in flight",
                    produce_key(size, 1024),
                    size,
                    cfg,
                    r,
                    "per-request p50/p99",
                )
            )
            cfg = p.best[size]
            r = bench.produce(targets, size, cfg)
            rows.append(
                produce_row(
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
            r = bench.produce(targets, size, cfg)
            rows.append(
                produce_row(
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
            r = bench.produce(targets, size, cfg)
            rows.append(
                produce_row(
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
            rows.append(run_latency(bench, targets[0], size))
    return rows


def run_latency(bench: Bench, target: dict[str, Any], size: int) -> Result:
    """p50/p99 of single-record produces with one request in flight, to ``target``'s leader."""
    p = bench.plan
    meter = CpuMeter(bench.node_pids())
    a = bench.workers[0].call(
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


def run_client_producer(bench: Bench) -> Result:
    """100 B records through the Python client's idempotent ``Producer``, on one fresh log."""
    p = bench.plan
    with bench.log("client-producer") as targets:
        meter = CpuMeter(bench.node_pids())
        bootstrap = sorted({t["address"] for t in targets})
        a = bench.workers[0].call(
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
