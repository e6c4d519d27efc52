"""NATS JetStream (3 nodes on loopback, R3, file storage) as the peer tabletlog is measured against.

Same workloads as tabletlog's: publish 100 B / 1 KiB with 1, 64 and 1024 acks outstanding, pull
consume with fetch(1000), and the time from kill -9 of the stream leader's server to the first
acknowledged publish. It runs twice, with the Go default GOMAXPROCS and with GOMAXPROCS=1 per
server, because on 2 vCPUs the second is ~50% faster and the issue asks us to beat the better one.
Every loop stops at a message count or a time limit; every server is killed in a ``finally``.
The stream's client-side helpers are ``bench.nats_stream``; the failover trials,
``bench.nats_failover``.

Run alone: ``python -m bench.nats_peer [--quick] [--only publish,failover]``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import time
from dataclasses import dataclass
from typing import Any

import nats
from nats.js.api import AckPolicy, ConsumerConfig

from bench.nats_cluster import NatsCluster, ensure_nats_server, nats_server_version
from bench.nats_failover import run_failover
from bench.nats_stream import STREAM, SUBJECT, connect, create_stream, stream_leader
from bench.report import Result, consume_key, latency_ms, print_table, produce_key

try:
    import psutil
except ImportError:  # CPU figures are a nice-to-have; the rates do not depend on them
    psutil = None


@dataclass(frozen=True)
class Limits:
    """Per-run bounds. The defaults keep all NATS runs under ~3 minutes, quick under ~40 s."""

    sizes: tuple[int, ...] = (100, 1024)
    windows: tuple[int, ...] = (1, 64, 1024)
    w1_msgs: int = 3000
    w1_secs: float = 2.5
    max_msgs: int = 100_000
    max_secs: float = 5.0
    consume_secs: float = 4.0
    failover_trials: int = 3
    failover_pre_kill: float = 2.0
    failover_post: float = 1.0

    @classmethod
    def quick(cls) -> Limits:
        """Enough to see the shape in ~30-40 s: no window 64, one failover trial."""
        return cls(
            windows=(1, 1024),
            w1_msgs=1000,
            w1_secs=0.6,
            max_secs=1.0,
            consume_secs=0.8,
            failover_trials=1,
            failover_pre_kill=0.5,
            failover_post=0.3,
        )


class CpuMeter:
    """CPU seconds (user+sys) of this client and of the servers over one run, as % of one core."""

    def __init__(self, server_pids: list[int]) -> None:
        self.procs = []
        if psutil is not None:
            self.procs = [psutil.Process(os.getpid())] + [psutil.Process(p) for p in server_pids]
        self.t0 = time.perf_counter()
        self.start = [self._cpu(p) for p in self.procs]

    @staticmethod
    def _cpu(p: Any) -> float:
        try:
            t = p.cpu_times()
            return float(t.user + t.system)
        except Exception:  # a killed server has no counters any more
            return 0.0

    def note(self) -> str:
        """'cpu client 60% servers 120%' (of one core; this box has 100% per vCPU)."""
        if not self.procs:
            return ""
        dt = time.perf_counter() - self.t0
        used = [self._cpu(p) - s for p, s in zip(self.procs, self.start, strict=True)]
        return f"cpu client {100 * used[0] / dt:.0f}% servers {100 * sum(used[1:]) / dt:.0f}%"


async def publish_run(
    nc: Any, cluster: NatsCluster, *, system: str, size: int, window: int, lim: Limits
) -> tuple[Result, int]:
    """Publish ``size``-byte messages with ``window`` un-acked; returns the row and acked count.

    Window 1 awaits each ``js.publish``; larger windows use ``publish_async`` with
    ``publish_async_max_pending=window``. A message counts when its PubAck (sent by JetStream
    after the R3 quorum has it) arrives; latency is from handing it to the client to the ack.
    """
    payload = os.urandom(size)
    lat: list[float] = []
    errors = 0
    max_msgs = lim.w1_msgs if window == 1 else lim.max_msgs
    secs = lim.w1_secs if window == 1 else lim.max_secs
    meter = CpuMeter(cluster.pids())
    t_start = time.perf_counter()
    deadline = t_start + secs
    if window == 1:
        js = nc.jetstream(timeout=5)
        for _ in range(max_msgs):
            t0 = time.perf_counter()
            if t0 > deadline:
                break
            await js.publish(SUBJECT, payload)
            lat.append(time.perf_counter() - t0)
        t_end = time.perf_counter()
    else:
        js = nc.jetstream(timeout=5, publish_async_max_pending=window)
        last_ack = [t_start]

        def done(t0: float, fut: asyncio.Future[Any]) -> None:
            nonlocal errors
            if fut.cancelled() or fut.exception() is not None:
                errors += 1
                return
            now = time.perf_counter()
            lat.append(now - t0)
            last_ack[0] = now

        for _ in range(max_msgs):
            if time.perf_counter() > deadline:
                break
            fut = await js.publish_async(SUBJECT, payload)
            fut.add_done_callback(functools.partial(done, time.perf_counter()))
        await asyncio.wait_for(js.publish_async_completed(), timeout=30)
        t_end = last_ack[0]
    elapsed = t_end - t_start
    n = len(lat)
    p50, p99 = latency_ms(lat)
    notes = "; ".join(x for x in (meter.note(), f"{errors} errors" if errors else "") if x)
    return Result(
        f"publish {size} B, window {window}",
        system,
        produce_key(size, window),
        msgs_per_s=n / elapsed,
        mb_per_s=n * size / elapsed / 1e6,
        p50_ms=p50,
        p99_ms=p99,
        notes=notes,
    ), n


async def consume_run(
    nc: Any, cluster: NatsCluster, *, system: str, size: int, count: int, lim: Limits
) -> Result:
    """Read the stream from the start with a fresh AckNone pull consumer and fetch(1000)."""
    js = nc.jetstream(timeout=5)
    psub = await js.pull_subscribe(
        SUBJECT, stream=STREAM, config=ConsumerConfig(ack_policy=AckPolicy.NONE)
    )
    got = nbytes = 0
    meter = CpuMeter(cluster.pids())
    t_start = time.perf_counter()
    deadline = t_start + lim.consume_secs
    try:
        while got < count and time.perf_counter() < deadline:
            try:
                msgs = await psub.fetch(1000, timeout=1.0)
            except nats.errors.TimeoutError:
                break
            got += len(msgs)
            nbytes += sum(len(m.data) for m in msgs)
        elapsed = time.perf_counter() - t_start
        note = meter.note()
        name = (await psub.consumer_info()).name
        await psub.unsubscribe()
        await js.delete_consumer(STREAM, name)
    except Exception:
        await psub.unsubscribe()
        raise
    return Result(
        f"consume {size} B, pull fetch(1000)",
        system,
        consume_key(size),
        msgs_per_s=got / elapsed,
        mb_per_s=nbytes / elapsed / 1e6,
        notes=f"{got} of {count} msgs; {note}",
    )


async def _workloads(cluster: NatsCluster, system: str, lim: Limits) -> list[Result]:
    nc = await connect(cluster.urls)
    try:
        js = nc.jetstream(timeout=5)
        await create_stream(js)
        await stream_leader(js)
        out: list[Result] = []
        for size in lim.sizes:
            acked = 0
            for window in lim.windows:
                await js.purge_stream(STREAM)
                res, acked = await publish_run(
                    nc, cluster, system=system, size=size, window=window, lim=lim
                )
                # Sanity check that an ack means a stored message: the stream must hold them all.
                stored = (await js.stream_info(STREAM)).state.messages
                if stored != acked:
                    res.notes += f"; STREAM HOLDS {stored} OF {acked} ACKED"
                out.append(res)
            out.append(
                await consume_run(nc, cluster, system=system, size=size, count=acked, lim=lim)
            )
        return out
    finally:
        await asyncio.wait_for(nc.close(), timeout=10)


def run(
    quick: bool = False,
    parts: tuple[str, ...] = ("publish", "failover"),
    configs: tuple[int | None, ...] = (None, 1),
    auto_install: bool = True,
) -> list[Result]:
    """All NATS rows: workloads for each GOMAXPROCS setting in ``configs`` (None = Go default),
    then the failover trials. Raises NatsUnavailableError if nats-server cannot be found (and,
    with ``auto_install``, bench/setup.sh could not install it)."""
    binary = ensure_nats_server(auto_install)
    version = nats_server_version(binary)
    lim = Limits.quick() if quick else Limits()
    results: list[Result] = []
    if "publish" in parts:
        for gmp in configs:
            system = "NATS JS R3" + ("" if gmp is None else f" GOMAXPROCS={gmp}")
            with NatsCluster(3, gomaxprocs=gmp, binary=binary) as cluster:
                results.extend(asyncio.run(_workloads(cluster, system, lim)))
    if "failover" in parts:
        results.append(
            asyncio.run(run_failover(lim.failover_trials, lim.failover_pre_kill, lim.failover_post))
        )
    for r in results:
        r.extra.setdefault("nats_server", version)
    return results


def main() -> None:
    """CLI entry point: run the NATS rows alone and print them."""
    ap = argparse.ArgumentParser(description="NATS JetStream R3 peer benchmark")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument(
        "--only",
        default="publish,failover",
        help="comma list of: publish (incl. consume), failover",
    )
    args = ap.parse_args()
    t0 = time.monotonic()
    rows = run(quick=args.quick, parts=tuple(args.only.split(",")))
    print_table(rows, title=f"NATS JetStream peer ({time.monotonic() - t0:.0f} s)")


if __name__ == "__main__":
    main()
