"""NATS JetStream (3 nodes on loopback, R3, file storage) as the peer tabletlog is measured against.

Same workloads as tabletlog's: publish 100 B / 1 KiB with 1, 64 and 1024 acks outstanding, pull
consume with fetch(1000), and the time from kill -9 of the stream leader's server to the first
acknowledged publish. It runs twice, with the Go default GOMAXPROCS and with GOMAXPROCS=1 per
server, because on 2 vCPUs the second is ~50% faster and the issue asks us to beat the better one.
Every loop stops at a message count or a time limit; every server is killed in a ``finally``.

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
from nats.js.api import AckPolicy, ConsumerConfig, StorageType

from bench.nats_cluster import NatsCluster, ensure_nats_server, nats_server_version
from bench.report import FAILOVER, Result, consume_key, latency_ms, median, print_table, produce_key

try:
    import psutil
except ImportError:  # CPU figures are a nice-to-have; the rates do not depend on them
    psutil = None

STREAM = "BENCH"
SUBJECT = "bench.data"


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


async def _quiet(*_args: Any) -> None:
    """Connection callbacks that keep nats-py's reconnect chatter out of the table output."""


async def connect(servers: list[str], **kw: Any) -> Any:
    """A nats-py connection that reconnects quickly and quietly (the failover needs both)."""
    return await nats.connect(
        servers=servers,
        connect_timeout=2,
        reconnect_time_wait=0.1,
        max_reconnect_attempts=-1,
        error_cb=_quiet,
        disconnected_cb=_quiet,
        reconnected_cb=_quiet,
        closed_cb=_quiet,
        **kw,
    )


async def create_stream(js: Any, timeout: float = 30.0) -> None:
    """Create the R3 file stream, retrying while the JetStream meta group elects its leader."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            await js.add_stream(
                name=STREAM, subjects=["bench.>"], storage=StorageType.FILE, num_replicas=3
            )
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def stream_leader(js: Any, timeout: float = 15.0) -> str:
    """Name of the server leading the stream's Raft group (polls until one is elected)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            info = await js.stream_info(STREAM)
            if info.cluster is not None and info.cluster.leader:
                return str(info.cluster.leader)
        except Exception:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise TimeoutError("stream has no leader")
        await asyncio.sleep(0.1)


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


async def _read_back_ids(servers: list[str], timeout: float = 30.0) -> list[str]:
    """Every Nats-Msg-Id in the stream, read from the surviving servers."""
    nc = await connect(servers)
    ids: list[str] = []
    try:
        js = nc.jetstream(timeout=5)
        deadline = time.monotonic() + timeout
        while True:  # the consumer's own R3 group may need an election right after the kill
            try:
                psub = await js.pull_subscribe(
                    SUBJECT, stream=STREAM, config=ConsumerConfig(ack_policy=AckPolicy.NONE)
                )
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
        while time.monotonic() < deadline:
            try:
                msgs = await psub.fetch(1000, timeout=1.0)
            except nats.errors.TimeoutError:
                break
            ids.extend((m.headers or {}).get("Nats-Msg-Id", "") for m in msgs)
        return ids
    finally:
        await asyncio.wait_for(nc.close(), timeout=10)


async def _failover_trial(lim: Limits) -> dict[str, Any]:
    """One fresh cluster: publish with in-flight 1, kill -9 the stream leader's server, time the
    first ack of a publish sent after the kill. The client is connected to a follower, so this is
    the server-side failover; publishes carry Nats-Msg-Id so retries cannot duplicate."""
    with NatsCluster(3) as cluster:
        admin = await connect(cluster.urls)
        try:
            await create_stream(admin.jetstream(timeout=5))
            leader = await stream_leader(admin.jetstream(timeout=5))
        finally:
            await asyncio.wait_for(admin.close(), timeout=10)
        followers = [cluster.url(n) for n in cluster.names if n != leader]
        nc = await connect([*followers, cluster.url(leader)], dont_randomize=True)
        js = nc.jetstream(timeout=0.25)
        payload = os.urandom(100)
        acked: list[str] = []
        state: dict[str, float] = {"kill": float("inf"), "first": float("inf")}
        stop = asyncio.Event()
        first = asyncio.Event()

        async def publisher() -> None:
            seq = 0
            while not stop.is_set():
                seq += 1
                msg_id = str(seq)
                while not stop.is_set():
                    t0 = time.perf_counter()
                    try:
                        await js.publish(
                            SUBJECT, payload, timeout=0.25, headers={"Nats-Msg-Id": msg_id}
                        )
                    except Exception:
                        await asyncio.sleep(0.01)
                        continue
                    acked.append(msg_id)
                    if t0 >= state["kill"] and not first.is_set():
                        state["first"] = time.perf_counter()
                        first.set()
                    break

        task = asyncio.create_task(publisher())
        try:
            await asyncio.sleep(lim.failover_pre_kill)
            state["kill"] = time.perf_counter()
            cluster.kill(leader)
            try:
                await asyncio.wait_for(first.wait(), timeout=30)
            except TimeoutError:
                pass
            await asyncio.sleep(lim.failover_post)
        finally:
            stop.set()
            await asyncio.wait_for(task, timeout=5)
            await asyncio.wait_for(nc.close(), timeout=10)
        read = await _read_back_ids(followers)
        read_set = set(read)
        return {
            "unavail_s": state["first"] - state["kill"],
            "acked": len(acked),
            "lost": len(set(acked) - read_set),
            "dups": len(read) - len(read_set),
        }


async def _failover(lim: Limits) -> Result:
    trials = [await _failover_trial(lim) for _ in range(lim.failover_trials)]
    times = [t["unavail_s"] for t in trials]
    ok = [t for t in times if t != float("inf")]
    acked = sum(t["acked"] for t in trials)
    lost = sum(t["lost"] for t in trials)
    dups = sum(t["dups"] for t in trials)
    notes = (
        f"{len(trials)} trials: {' / '.join(f'{t:.2f}' for t in times)} s; "
        f"p99 column = max; client on a follower; {acked} acked, {lost} lost, "
        f"{dups} duplicates"
    )
    return Result(
        "kill -9 stream leader -> first ack",
        "NATS JS R3",
        FAILOVER,
        p50_ms=median(ok) * 1e3 if ok else None,
        p99_ms=max(times) * 1e3,
        notes=notes,
        extra={"trials": trials},
    )


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
        results.append(asyncio.run(_failover(lim)))
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
