"""Load generator of the tabletlog benchmark: a child process that takes orders on stdin.

It runs in its own process so that its CPU (HTTP client, batch decoding) is separate from the
orchestrator's and can be measured. ``bench.tabletlog_bench`` starts one or more of these
(``python -m bench.tabletlog_load``), writes one JSON command per line and reads one JSON answer
per line. Each command runs on a fresh uvloop event loop with its own aiohttp session (keep-alive
connections, one per request in flight).

Commands (``op``):

* ``produce``: pre-built batches of ``batch_records`` records of ``size`` bytes POSTed to the
  binary endpoint of each target tablet leader (``X-Tabletlog-No-Forward: 1``), ``in_flight``
  requests per tablet, for ``warmup_s`` + ``duration_s`` (only acks inside the measured window
  count), or until ``max_records`` were acknowledged (fills).
* ``latency``: one single-record batch at a time to one leader; per-request latency.
* ``consume``: read one tablet from offset 0 to ``end`` through the binary consume endpoint,
  decoding every record with ``wire.batch.iter_records`` (``mode`` ``serial`` or
  ``pipelined``: the next fetch is sent, from ``X-Tabletlog-Next-Offset``, before the current
  answer is decoded), or with the Python client's ``Consumer`` (``mode`` ``client``).
* ``client_producer``: the Python client's ``Producer`` (idempotent, linger) sending records
  in a loop.

Every loop is bounded by a deadline; the orchestrator also kills this process when it is done.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

import aiohttp
import uvloop
from yarl import URL

from client import AsyncClient
from wire.batch import build_batch, iter_records

CONTENT_TYPE = "application/vnd.tabletlog.batches"
NO_FORWARD = "X-Tabletlog-No-Forward"
NEXT_OFFSET = "X-Tabletlog-Next-Offset"
Cmd = dict[str, Any]


def _session(timeout_s: float = 30.0) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=timeout_s),
        skip_auto_headers=("Content-Type", "User-Agent"),
    )


def _batches(size: int, records: int, distinct: int = 4) -> list[bytes]:
    """A few different pre-built batches (random payloads) to cycle through."""
    return [
        build_batch([(None, os.urandom(size)) for _ in range(records)]) for _ in range(distinct)
    ]


def _produce_url(target: Cmd, acks: str, timeout_ms: int) -> URL:
    return URL(
        f"http://{target['address']}/v1/logs/{target['log']}/tablets/{target['tablet']}"
        f"/batches?acks={acks}&timeout_ms={timeout_ms}",
        encoded=True,
    )


async def produce(cmd: Cmd) -> Cmd:
    """Windowed produce of pre-built batches; see the module docstring."""
    size, per_batch = int(cmd["size"]), int(cmd["batch_records"])
    in_flight, acks = int(cmd["in_flight"]), str(cmd.get("acks", "all"))
    warmup_s, duration_s = float(cmd.get("warmup_s", 0)), float(cmd["duration_s"])
    max_records = int(cmd.get("max_records") or 0)
    batches = _batches(size, per_batch)
    headers = {"Content-Type": CONTENT_TYPE, NO_FORWARD: "1"}
    done: list[tuple[float, float, int]] = []  # (ack time, latency, records)
    errors: dict[str, int] = {}
    issued = 0
    t0 = time.perf_counter()
    t_begin, t_end = t0 + warmup_s, t0 + warmup_s + duration_s

    async def lane(session: aiohttp.ClientSession, url: URL, k: int) -> None:
        nonlocal issued
        i = k
        while time.perf_counter() < t_end and (not max_records or issued < max_records):
            issued += per_batch
            body = batches[i % len(batches)]
            i += 1
            start = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as resp:
                    answer = await resp.read()
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                issued -= per_batch
                await asyncio.sleep(0.01)
                continue
            now = time.perf_counter()
            if status != 200:
                code = f"{status} {answer[:60].decode(errors='replace')}"
                errors[code] = errors.get(code, 0) + 1
                issued -= per_batch
                await asyncio.sleep(0.01)
                continue
            reply = json.loads(answer)
            if reply["end_offset"] - reply["base_offset"] != per_batch:
                errors["wrong offsets"] = errors.get("wrong offsets", 0) + 1
            done.append((now, now - start, per_batch))

    cpu0 = time.process_time()
    async with _session() as session:
        lanes = [
            lane(session, _produce_url(t, acks, 10_000), k)
            for t in cmd["targets"]
            for k in range(in_flight)
        ]
        await asyncio.gather(*lanes)
    t_last = time.perf_counter()
    cpu = time.process_time() - cpu0
    if max_records:  # a fill: everything counts, from the first send to the last ack
        t_begin, t_end = t0, max((d[0] for d in done), default=t_last)
    window = [d for d in done if t_begin <= d[0] <= t_end]
    return {
        "records": sum(d[2] for d in window),
        "requests": len(window),
        "seconds": t_end - t_begin,
        "latencies": [d[1] for d in window],
        "total_records": sum(d[2] for d in done),
        "errors": errors,
        "cpu_pct": 100 * cpu / max(t_last - t0, 1e-9),
    }


async def latency(cmd: Cmd) -> Cmd:
    """Single-record batches, one request in flight, to one tablet leader."""
    size, samples, max_s = int(cmd["size"]), int(cmd["samples"]), float(cmd["max_s"])
    min_samples = int(cmd.get("min_samples", 0))  # past max_s until these, up to 2 x max_s
    batches = _batches(size, 1, distinct=16)
    url = _produce_url(cmd["target"], "all", 10_000)
    headers = {"Content-Type": CONTENT_TYPE, NO_FORWARD: "1"}
    lat: list[float] = []
    errors: dict[str, int] = {}
    async with _session(10.0) as session:
        for i in range(20):  # warm the connection and the server's code paths
            async with session.post(url, data=batches[i % 16], headers=headers) as resp:
                await resp.read()
        t0 = time.perf_counter()
        cpu0 = time.process_time()
        while len(lat) < samples:
            elapsed = time.perf_counter() - t0
            if elapsed > 2 * max_s or (elapsed > max_s and len(lat) >= min_samples):
                break
            start = time.perf_counter()
            async with session.post(url, data=batches[len(lat) % 16], headers=headers) as resp:
                await resp.read()
                status = resp.status
            if status == 200:
                lat.append(time.perf_counter() - start)
            else:
                errors[str(status)] = errors.get(str(status), 0) + 1
        elapsed = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
    return {
        "latencies": lat,
        "seconds": elapsed,
        "errors": errors,
        "cpu_pct": 100 * cpu / max(elapsed, 1e-9),
    }


async def consume(cmd: Cmd) -> Cmd:
    """Read ``[0, end)`` of one tablet, decoding every record; see the module docstring."""
    address, log, tablet = cmd["address"], cmd["log"], int(cmd["tablet"])
    end, max_bytes, mode = int(cmd["end"]), int(cmd["max_bytes"]), str(cmd["mode"])
    max_s = float(cmd.get("max_s", 60))
    base = f"http://{address}/v1/logs/{log}/tablets/{tablet}/batches"
    count = nbytes = fetches = 0
    expect = 0  # the next offset we must see: every record exactly once, in order
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    deadline = t0 + max_s

    def decode(body: bytes, position: int) -> None:
        nonlocal count, nbytes, expect
        for record in iter_records(body):
            if record.offset < position:
                continue
            if record.offset != expect:
                raise RuntimeError(f"offset {record.offset} where {expect} was expected")
            expect += 1
            count += 1
            nbytes += len(record.value or b"")

    if mode == "client":
        async with AsyncClient(address, timeout_s=10) as client:
            consumer = client.consume(log, tablet, 0, stop_at_end=True, max_bytes=max_bytes)
            async for record in consumer:
                if record.offset != expect:
                    raise RuntimeError(f"offset {record.offset} where {expect} was expected")
                expect += 1
                count += 1
                nbytes += len(record.value or b"")
                if count >= end or (count % 10_000 == 0 and time.perf_counter() > deadline):
                    break
            fetches = -1  # not visible through the client
    else:
        async with _session(10.0) as session:

            async def fetch(offset: int) -> tuple[bytes, int]:
                url = URL(f"{base}?offset={offset}&max_bytes={max_bytes}&wait_ms=0", encoded=True)
                async with session.get(url) as resp:
                    if resp.status != 200:
                        raise RuntimeError(
                            f"consume at {offset}: HTTP {resp.status} {(await resp.read())[:200]!r}"
                        )
                    body = await resp.read()
                    return body, int(resp.headers[NEXT_OFFSET])

            offset = 0
            pending: asyncio.Task[tuple[bytes, int]] | None = None
            while offset < end and time.perf_counter() < deadline:
                if pending is None:
                    body, nxt = await fetch(offset)
                else:
                    body, nxt = await pending
                    pending = None
                fetches += 1
                if nxt <= offset:
                    raise RuntimeError(f"no progress at offset {offset}")
                if mode == "pipelined" and nxt < end:
                    pending = asyncio.ensure_future(fetch(nxt))
                decode(body, offset)
                offset = nxt
            if pending is not None:
                pending.cancel()
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    return {
        "records": count,
        "bytes": nbytes,
        "seconds": elapsed,
        "fetches": fetches,
        "complete": count >= end,
        "cpu_pct": 100 * cpu / max(elapsed, 1e-9),
    }


async def client_producer(cmd: Cmd) -> Cmd:
    """The Python client's Producer: ``send`` in a loop for the measured window.

    Acknowledged records are read from ``producer.stats`` when the window opens and closes (no
    callback per record: that would be the benchmark's cost, not the library's).
    """
    size, linger_ms = int(cmd["size"]), float(cmd.get("linger_ms", 5))
    warmup_s, duration_s = float(cmd.get("warmup_s", 0)), float(cmd["duration_s"])
    values = [os.urandom(size) for _ in range(64)]
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    t_begin, t_end = t0 + warmup_s, t0 + warmup_s + duration_s
    acked_at_begin: int | None = None
    async with AsyncClient(cmd["bootstrap"], timeout_s=10) as client:
        producer = client.producer(
            cmd["log"],
            linger_ms=linger_ms,
            max_buffer_bytes=int(cmd.get("max_buffer_bytes", 8 << 20)),
        )
        i = 0
        while True:
            now = time.perf_counter()
            if acked_at_begin is None and now >= t_begin:
                acked_at_begin, t_begin = producer.stats.records_sent, now
            if now >= t_end:
                break
            for _ in range(100):
                _ = await producer.send(values[i & 63])
                i += 1
        acked = producer.stats.records_sent - (acked_at_begin or 0)
        t_end = time.perf_counter()
        await asyncio.wait_for(producer.close(), timeout=60)
        stats = producer.stats
    t_last = time.perf_counter()
    cpu = time.process_time() - cpu0
    return {
        "records": acked,
        "seconds": t_end - t_begin,
        "sent": i,
        "failed": stats.failed_batches,
        "batches": stats.batches_sent,
        "retries": stats.retries,
        "records_per_batch": stats.records_sent / max(stats.batches_sent, 1),
        "batch_latencies": sorted(stats.batch_latencies_s),
        "cpu_pct": 100 * cpu / max(t_last - t0, 1e-9),
    }


OPS: dict[str, Callable[[Cmd], Coroutine[Any, Any, Cmd]]] = {
    "produce": produce,
    "latency": latency,
    "consume": consume,
    "client_producer": client_producer,
}


def main() -> None:
    """Serve commands from stdin until EOF or ``{"op": "exit"}``; one JSON answer per line."""
    out = sys.stdout
    sys.stdout = sys.stderr  # nothing else may write to the answer channel
    out.write(json.dumps({"ready": os.getpid()}) + "\n")
    out.flush()
    for line in sys.stdin:
        cmd: Cmd = json.loads(line)
        if cmd.get("op") == "exit":
            break
        answer: Cmd
        try:
            answer = uvloop.run(OPS[cmd["op"]](cmd))
        except Exception as exc:
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        out.write(json.dumps(answer) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
