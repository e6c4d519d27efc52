"""Throughput of the client's Producer and Consumer (not a test: run it by hand).

One measurement per process, printed as one JSON line (from the repository root)::

    .venv/bin/python -m tests.client.bench_client produce --bootstrap H:P,... --seconds 5
    .venv/bin/python -m tests.client.bench_client consume --bootstrap H:P,... --records 500000
    .venv/bin/python -m tests.client.bench_client fake-produce --records 1000000  # acks in-process
    .venv/bin/python -m tests.client.bench_client fake-consume --fetch-latency-ms 5

``produce`` sends 100 B records in a loop through the idempotent Producer (linger 5 ms, 8 MiB
buffer, like ``bench/tabletlog_load.py``) and counts the records acknowledged in the window;
``consume`` iterates a Consumer over tablet 0 from the earliest offset. Only API that every
version has is used, so the same script measures an older checkout: run the file with that
checkout on PYTHONPATH. ``--uvloop`` runs on uvloop (as ``bench/tabletlog_load.py`` does).

``cluster`` starts a 3-node cluster (testkit/cluster.py, fsync always, acks=all), then runs
interleaved rounds of produce and consume for each code root and prints the medians::

    git archive <commit> client storage replication | tar -x -C /tmp/base
    .venv/bin/python -m tests.client.bench_client cluster --rounds 3 --baseline /tmp/base
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from client.async_client import AsyncClient
from client.transport import Response
from wire.batch import build_batch, parse_header


class InstantTransport:
    """Acknowledges every produce at once; serves pre-built batches to consumers."""

    def __init__(
        self, bodies: list[bytes] | None = None, per_fetch: int = 8, fetch_latency_s: float = 0.0
    ) -> None:
        self.fetch_latency_s = fetch_latency_s
        self.end: dict[str, int] = {}
        self.bodies = bodies or []
        self.per_fetch = per_fetch
        self.fetches = 0

    async def request(
        self,
        method: str,
        address: str,
        path: str,
        *,
        params: Any = None,
        json_body: Any = None,
        data: bytes | None = None,
        headers: Any = None,
        timeout_s: float,
    ) -> Response:
        if path == "/v1/cluster":
            nodes = [{"id": "n1", "address": "h:1", "alive": True}]
            return _json({"cluster": "x", "controller": "n1", "nodes": nodes})
        if path == "/v1/logs/bench":
            tablets = [
                {
                    "tablet": t,
                    "leader": "n1",
                    "leader_epoch": 1,
                    "replicas": ["n1"],
                    "isr": ["n1"],
                    "start_offset": 0,
                    "high_watermark": len(self.bodies) * 1000,
                }
                for t in range(3)
            ]
            return _json({"name": "bench", "config": {}, "tablets": tablets})
        if method == "POST":
            assert data is not None
            count = parse_header(data).record_count
            base = self.end.get(path, 0)
            self.end[path] = base + count
            await asyncio.sleep(0)
            return _json(
                {"tablet": 0, "base_offset": base, "end_offset": base + count, "duplicate": False}
            )
        offset = int(params["offset"])
        if self.fetch_latency_s:
            await asyncio.sleep(self.fetch_latency_s)  # the network and the node's read
        first = offset // 1000
        chunk = self.bodies[first : first + self.per_fetch]
        nxt = (first + len(chunk)) * 1000
        self.fetches += 1
        hw = len(self.bodies) * 1000
        return Response(
            200,
            b"".join(chunk),
            {"X-Tabletlog-High-Watermark": str(hw), "X-Tabletlog-Next-Offset": str(nxt)},
            address,
        )

    async def close(self) -> None:
        pass


def _json(body: Any) -> Response:
    return Response(200, json.dumps(body).encode(), {"Content-Type": "application/json"})


async def produce(
    client: AsyncClient,
    log: str,
    seconds: float | None,
    records: int | None,
    size: int,
    options: dict[str, Any],
) -> dict[str, Any]:
    values = [os.urandom(size) for _ in range(64)]
    producer = client.producer(log, **options)
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    deadline = t0 + seconds if seconds else float("inf")
    limit = records or 1 << 62
    i = 0
    while i < limit and time.perf_counter() < deadline:
        for _ in range(100):
            _ = await producer.send(values[i & 63])
            i += 1
    acked_in_window = producer.stats.records_sent
    t1 = time.perf_counter()
    await producer.close()
    t2 = time.perf_counter()
    stats = producer.stats
    lat = sorted(stats.batch_latencies_s)
    elapsed = (t1 - t0) if seconds else (t2 - t0)
    acked = acked_in_window if seconds else stats.records_sent
    return {
        "records_per_s": round(acked / elapsed),
        "sent": i,
        "acked": acked,
        "elapsed_s": round(elapsed, 3),
        "batches": stats.batches_sent,
        "records_per_batch": round(stats.records_sent / max(stats.batches_sent, 1)),
        "retries": stats.retries,
        "failed_batches": stats.failed_batches,
        "batch_p50_ms": round(lat[len(lat) // 2] * 1000, 1) if lat else None,
        "cpu_pct": round(100 * (time.process_time() - cpu0) / (t2 - t0)),
        "cpu_us_per_record": round((time.process_time() - cpu0) / max(acked, 1) * 1e6, 3),
    }


async def consume(
    client: AsyncClient,
    log: str,
    tablet: int,
    records: int,
    max_bytes: int,
    options: dict[str, Any],
) -> dict[str, Any]:
    consumer = client.consume(
        log, tablet, "earliest", stop_at_end=True, max_bytes=max_bytes, **options
    )
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    count = 0
    nbytes = 0
    async for record in consumer:
        count += 1
        nbytes += len(record.value or b"")
        if count >= records:
            break
    elapsed = time.perf_counter() - t0
    return {
        "records_per_s": round(count / elapsed),
        "records": count,
        "bytes": nbytes,
        "elapsed_s": round(elapsed, 3),
        "cpu_pct": round(100 * (time.process_time() - cpu0) / elapsed),
        "cpu_us_per_record": round((time.process_time() - cpu0) / max(count, 1) * 1e6, 3),
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = json.loads(args.options)
    if args.op in ("produce", "consume"):
        client = AsyncClient(args.bootstrap, timeout_s=10)
    elif args.op == "fake-produce":
        client = AsyncClient(["h:1"], transport=InstantTransport())
    else:
        value = os.urandom(args.size)
        bodies = [
            build_batch([(None, value)] * 1000, create_time_ms=1, base_offset=k * 1000)
            for k in range(args.records // 1000)
        ]
        client = AsyncClient(
            ["h:1"],
            transport=InstantTransport(bodies, fetch_latency_s=args.fetch_latency_ms / 1000),
        )
    async with client:
        if args.op in ("produce", "fake-produce"):
            return await produce(
                client,
                args.log,
                args.seconds if args.op == "produce" else None,
                args.records if args.op == "fake-produce" else None,
                args.size,
                options,
            )
        return await consume(
            client,
            args.log,
            args.tablet,
            args.records,
            args.max_bytes,
            json.loads(args.consumer_options),
        )


def run_op(root: str, *args: str) -> dict[str, Any]:
    """One measurement in a fresh process with ``root`` first on the import path."""
    out = subprocess.run(
        [sys.executable, __file__, *args],
        check=False,
        env={**os.environ, "PYTHONPATH": root},
        capture_output=True,
        text=True,
        timeout=300,
    )
    if out.returncode != 0:
        return {"error": out.stderr[-2000:]}
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def cluster_rounds(args: argparse.Namespace) -> None:
    repo = str(Path(__file__).resolve().parents[2])
    from testkit.cluster import Cluster  # noqa: PLC0415 - only this command needs it

    roots = {"new": repo} | ({"old": args.baseline} if args.baseline else {})
    cluster = Cluster.create(Path(tempfile.mkdtemp(prefix="bench-client-")), 3)
    results: dict[str, list[dict[str, Any]]] = {}
    try:
        cluster.start_all()
        cluster.wait_ready(timeout_s=60)
        cluster.create_log("bench", tablets=3)
        time.sleep(3)
        boot = ",".join(f"{n.host}:{n.api_port}" for n in cluster.nodes.values())
        for r in range(args.rounds):
            for name, root in sorted(roots.items(), reverse=True):
                for op, extra in (
                    ("produce", ["--seconds", str(args.seconds)]),
                    ("consume", ["--records", str(args.records)]),
                ):
                    res = run_op(root, op, "--bootstrap", boot, "--uvloop", *extra)
                    results.setdefault(f"{op} {name}", []).append(res)
                    print(r, op, name, json.dumps(res), flush=True)
    finally:
        cluster.kill_all()
    print("\nmedians:")
    for key, rows in results.items():
        rates = [x["records_per_s"] for x in rows if "records_per_s" in x]
        cpu = [x["cpu_us_per_record"] for x in rows if "cpu_us_per_record" in x]
        if rates:
            print(
                f"  {key:12s} {statistics.median(rates):>10,.0f} records/s  runs {rates}  "
                f"client CPU {statistics.median(cpu):.2f} us/record"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "op", choices=("produce", "consume", "fake-produce", "fake-consume", "cluster")
    )
    parser.add_argument("--bootstrap", default="")
    parser.add_argument("--log", default="bench")
    parser.add_argument("--tablet", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--records", type=int, default=500_000)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--max-bytes", type=int, default=1 << 20)
    parser.add_argument("--options", default='{"linger_ms": 5, "max_buffer_bytes": 8388608}')
    parser.add_argument("--consumer-options", default="{}")
    parser.add_argument("--fetch-latency-ms", type=float, default=0.0)
    parser.add_argument("--uvloop", action="store_true")
    parser.add_argument("--rounds", type=int, default=3, help="cluster: rounds")
    parser.add_argument("--baseline", help="cluster: a checkout of older code to compare")
    arguments = parser.parse_args()
    if arguments.op == "cluster":
        cluster_rounds(arguments)
        sys.exit(0)
    if arguments.uvloop:
        import uvloop

        result = uvloop.run(main(arguments))
    else:
        result = asyncio.run(main(arguments))
    print(json.dumps(result))
