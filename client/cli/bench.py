"""``tabletlog bench``: produce N records with the client's Producer and report throughput.

Creates the log when it does not exist (cluster defaults), sends keyless records of ``--size``
random bytes round robin, shows a progress bar of acknowledged records, then a summary table:
records/s, MB/s and the p50/p99/max latency of a batch (from its first send to its
acknowledgement, retries included). Runs on the CLI's main thread.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from client.async_client import AsyncClient
from client.cli.common import (
    EXIT_OK,
    add_client_options,
    add_json_option,
    make_client,
    positive_float,
    positive_int,
    print_json,
    stdout_console,
)
from client.errors import AlreadyExists, NotFound
from client.producer import ProducerStats
from wire.batch import HEADER_SIZE, MAX_BATCH_BYTES


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bench = commands.add_parser(
        "bench",
        help="measure produce throughput and latency",
        description="Produce records with the Python client's Producer and report "
        "throughput and batch latency.",
    )
    bench.add_argument("--records", type=positive_int, default=100_000, metavar="N")
    bench.add_argument(
        "--size",
        type=positive_int,
        default=100,
        metavar="BYTES",
        help="value size of each record (default 100)",
    )
    bench.add_argument(
        "--batch",
        type=positive_int,
        default=1000,
        metavar="N",
        help="records per batch at most (default 1000)",
    )
    bench.add_argument("--acks", choices=("all", "1", "0"), default="all")
    bench.add_argument(
        "--log",
        default="bench",
        metavar="NAME",
        help="log to write to; created if missing (default bench)",
    )
    bench.add_argument("--linger-ms", type=float, default=5.0, metavar="MS")
    bench.add_argument(
        "--delivery-timeout",
        type=positive_float,
        default=60.0,
        metavar="SECONDS",
        help="give up on a batch after this long (default 60)",
    )
    add_client_options(bench, top_level=False)
    add_json_option(bench)
    bench.set_defaults(handler=run_bench)


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list (0.0 for an empty one)."""
    if not sorted_values:
        return 0.0
    rank = max(0, min(len(sorted_values) - 1, round(fraction * len(sorted_values)) - 1))
    return sorted_values[rank]


def summarize(records: int, size: int, elapsed_s: float, stats: ProducerStats) -> dict[str, Any]:
    """The numbers the summary table and ``--json`` show."""
    latencies = sorted(stats.batch_latencies_s)
    elapsed_s = max(elapsed_s, 1e-9)
    return {
        "records": records,
        "record_bytes": size,
        "elapsed_s": round(elapsed_s, 3),
        "records_per_s": round(records / elapsed_s, 1),
        "mb_per_s": round(records * size / elapsed_s / 1e6, 3),
        "batches": stats.batches_sent,
        "retries": stats.retries,
        "batch_latency_ms_p50": round(percentile(latencies, 0.50) * 1000, 3),
        "batch_latency_ms_p99": round(percentile(latencies, 0.99) * 1000, 3),
        "batch_latency_ms_max": round((latencies[-1] if latencies else 0.0) * 1000, 3),
    }


async def _ensure_log(client: AsyncClient, log: str) -> None:
    try:
        await client.describe_log(log)
    except NotFound:
        try:
            await client.create_log(log)
        except AlreadyExists:
            pass  # created concurrently: fine


async def run_bench(args: argparse.Namespace) -> int:
    batch_bytes = min(MAX_BATCH_BYTES, max(64 * 1024, args.batch * (args.size + 24) + HEADER_SIZE))
    value = os.urandom(args.size)
    async with make_client(args) as client:
        await _ensure_log(client, args.log)
        producer = client.producer(
            args.log,
            acks=args.acks,
            linger_ms=args.linger_ms,
            max_batch_bytes=batch_bytes,
            max_batch_records=args.batch,
            delivery_timeout_s=args.delivery_timeout,
        )
        stats = producer.stats  # progress and failures from the counters: no work per record
        progress = Progress(
            TextColumn("producing"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=stdout_console(),
            transient=True,
            disable=args.json,
        )
        started = time.perf_counter()
        with progress:
            task = progress.add_task("records", total=args.records)
            for i in range(args.records):
                _ = await producer.send(value)
                if i % 1000 == 0:
                    progress.update(task, completed=stats.records_sent)
                    if stats.failed_batches:
                        break
            while stats.records_sent < args.records and not stats.failed_batches:
                progress.update(task, completed=stats.records_sent)
                await asyncio.sleep(0.1)
            await producer.close()
            progress.update(task, completed=stats.records_sent)
        elapsed = time.perf_counter() - started
    if stats.last_error is not None:
        raise stats.last_error  # main() prints it as one line with the right exit status
    summary = summarize(args.records, args.size, elapsed, stats)
    summary.update(log=args.log, acks=args.acks)
    if args.json:
        print_json(summary)
    else:
        _print_summary(summary)
    return EXIT_OK


def _print_summary(summary: dict[str, Any]) -> None:
    table = Table(title="bench", title_justify="left", show_header=False)
    table.add_column("metric")
    table.add_column("value", justify="right")
    rows = [
        ("log / acks", f"{summary['log']} / {summary['acks']}"),
        ("records", f"{summary['records']:,} x {summary['record_bytes']} B"),
        ("elapsed", f"{summary['elapsed_s']:.2f} s"),
        ("records/s", f"{summary['records_per_s']:,.0f}"),
        ("MB/s", f"{summary['mb_per_s']:.2f}"),
        ("batches", f"{summary['batches']:,} ({summary['retries']} retries)"),
        ("batch latency p50", f"{summary['batch_latency_ms_p50']:.2f} ms"),
        ("batch latency p99", f"{summary['batch_latency_ms_p99']:.2f} ms"),
        ("batch latency max", f"{summary['batch_latency_ms_max']:.2f} ms"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    stdout_console().print(table)
