"""The machine's own limits, measured in the same run as the systems under test.

A replicated log can never be faster than the disk's fsync rate or the loopback's bandwidth, and
the project's machines are shared VMs whose speed drifts from run to run. Measuring the limits in
the same ``make bench`` run gives every other row a ceiling to be read against. Each measurement
stops at a byte/operation count or a time limit, whichever comes first.

Run alone: ``python -m bench.machine [--quick] [--dir DIR]``.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.procs import die_with_parent
from bench.report import (
    MACHINE_FSYNC_4K,
    MACHINE_READ,
    MACHINE_RTT,
    MACHINE_SEQ_WRITE,
    MACHINE_SEQ_WRITE_FSYNC,
    MACHINE_TCP,
    Result,
    latency_ms,
    print_table,
)

MiB = 1 << 20
SYSTEM = "machine"


def seq_write(path: Path, *, fsync_each: bool, max_bytes: int, max_secs: float) -> Result:
    """1 MiB ``os.write`` calls; fsync after each chunk (the log's "fsync always" with huge
    batches) or only once at the end (the device's buffered bandwidth). Time includes the fsync."""
    buf = os.urandom(MiB)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    written = 0
    try:
        t0 = time.perf_counter()
        deadline = t0 + max_secs
        while written < max_bytes and time.perf_counter() < deadline:
            written += os.write(fd, buf)
            if fsync_each:
                os.fsync(fd)
        os.fsync(fd)
        elapsed = time.perf_counter() - t0
    finally:
        os.close(fd)
    if fsync_each:
        return Result(
            "seq write 1 MiB chunks, fsync each",
            SYSTEM,
            MACHINE_SEQ_WRITE_FSYNC,
            msgs_per_s=written / MiB / elapsed,
            mb_per_s=written / elapsed / 1e6,
            notes=f"{written // MiB} MiB in {elapsed:.2f} s; msgs/s = fsyncs/s",
        )
    return Result(
        "seq write 1 MiB chunks, one fsync",
        SYSTEM,
        MACHINE_SEQ_WRITE,
        mb_per_s=written / elapsed / 1e6,
        notes=f"{written // MiB} MiB in {elapsed:.2f} s incl. final fsync",
    )


def page_cache_read(path: Path, *, max_secs: float) -> Result:
    """Re-read a just-written file with 1 MiB ``readinto``: the ceiling for serving consumers from
    memory, which is what a log's tail reads mostly are."""
    buf = bytearray(MiB)
    view = memoryview(buf)
    total = 0
    passes = 0
    t0 = time.perf_counter()
    deadline = t0 + max_secs
    with path.open("rb", buffering=0) as f:
        while time.perf_counter() < deadline:
            f.seek(0)
            while (n := f.readinto(view)) and time.perf_counter() < deadline:
                total += n
            passes += 1
    elapsed = time.perf_counter() - t0
    return Result(
        "seq read 1 MiB, page cache",
        SYSTEM,
        MACHINE_READ,
        mb_per_s=total / elapsed / 1e6,
        notes=f"{total // MiB} MiB in {elapsed:.2f} s ({passes} passes)",
    )


def fsync_latency(path: Path, *, max_ops: int, max_secs: float) -> Result:
    """4 KiB append + fsync, one at a time: the floor under one-request-in-flight ack latency
    and the ceiling of an un-batched writer that fsyncs every record."""
    buf = os.urandom(4096)
    samples: list[float] = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_TRUNC, 0o600)
    try:
        t_start = time.perf_counter()
        deadline = t_start + max_secs
        while len(samples) < max_ops and time.perf_counter() < deadline:
            t0 = time.perf_counter()
            os.write(fd, buf)
            os.fsync(fd)
            samples.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - t_start
    finally:
        os.close(fd)
    p50, p99 = latency_ms(samples)
    return Result(
        "4 KiB append + fsync, 1 at a time",
        SYSTEM,
        MACHINE_FSYNC_4K,
        msgs_per_s=len(samples) / elapsed,
        mb_per_s=len(samples) * 4096 / elapsed / 1e6,
        p50_ms=p50,
        p99_ms=p99,
        notes=f"{len(samples)} ops",
    )


# The peer side of the TCP tests runs in its own process, like a replica would. With an echo
# thread in the same process the ping-pong p50 was bimodal here (6 us in one run, 75 us in
# others); between processes it was 75-80 us every time. The child connects back to the
# parent's listener and serves that one connection.
_PEER_CODE = """
import socket, sys
mode, port = sys.argv[1], int(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
if mode == "sink":
    buf = memoryview(bytearray(1 << 20))
    total = 0
    while n := s.recv_into(buf):
        total += n
    s.sendall(str(total).encode())
else:
    while data := s.recv(1):
        s.sendall(data)
"""


def _connect_peer(mode: str) -> tuple[socket.socket, subprocess.Popen[bytes]]:
    """Start the peer process and return the accepted connection to it."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))  # port 0: never collides with anything else on the machine
    srv.listen(1)
    srv.settimeout(10)
    cmd = [sys.executable, "-c", _PEER_CODE, mode, str(srv.getsockname()[1])]
    proc = subprocess.Popen(die_with_parent(cmd), stdin=subprocess.DEVNULL)
    try:
        conn, _ = srv.accept()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        srv.close()
    conn.settimeout(None)
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return conn, proc


def _reap(proc: subprocess.Popen[bytes]) -> None:
    """Kill the peer process we started if it has not exited by itself."""
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def tcp_bandwidth(*, max_secs: float) -> Result:
    """Python ``sendall`` of 1 MiB buffers to a ``recv_into`` loop in another process: what a
    Python process can push through loopback at best. The receiver reports what it got."""
    payload = os.urandom(MiB)
    conn, proc = _connect_peer("sink")
    try:
        t0 = time.perf_counter()
        deadline = t0 + max_secs
        while time.perf_counter() < deadline:
            conn.sendall(payload)
        conn.shutdown(socket.SHUT_WR)
        received = int(conn.recv(64) or b"0")
        elapsed = time.perf_counter() - t0
    finally:
        conn.close()
        _reap(proc)
    return Result(
        "TCP stream, sendall 1 MiB -> recv_into",
        SYSTEM,
        MACHINE_TCP,
        mb_per_s=received / elapsed / 1e6,
        notes=f"{received * 8 / elapsed / 1e9:.1f} Gbit/s between 2 processes",
    )


def tcp_ping_pong(*, max_ops: int, max_secs: float) -> Result:
    """1-byte request/response with TCP_NODELAY between two processes: the network part of any
    replicated ack (a leader waiting for a follower)."""
    conn, proc = _connect_peer("echo")
    samples: list[float] = []
    try:
        t_start = time.perf_counter()
        deadline = t_start + max_secs
        while len(samples) < max_ops and time.perf_counter() < deadline:
            t0 = time.perf_counter()
            conn.sendall(b"x")
            if not conn.recv(1):
                break
            samples.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - t_start
    finally:
        conn.close()
        _reap(proc)
    p50, p99 = latency_ms(samples)
    return Result(
        "TCP ping-pong 1 B, NODELAY",
        SYSTEM,
        MACHINE_RTT,
        msgs_per_s=len(samples) / elapsed,
        p50_ms=p50,
        p99_ms=p99,
        notes=f"{len(samples)} round trips between 2 processes",
    )


def run(quick: bool = False, directory: str | None = None) -> list[Result]:
    """All machine limits, about 10 s (3-4 s with ``quick``). Files go to a temp dir in
    ``directory`` (default: the system temp dir; pass the data disk to measure that one)."""
    secs = 0.8 if quick else 2.0
    max_bytes = (512 if quick else 2048) * MiB
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="tabletlog-machine-", dir=directory) as tmp:
        d = Path(tmp)
        # Warm-up: the first large write on a fresh VM allocates blocks and is several times
        # slower (seen here: 10x); a short untimed write keeps that out of the figures.
        seq_write(d / "warm", fsync_each=False, max_bytes=128 * MiB, max_secs=secs / 2)
        (d / "warm").unlink()
        results.append(
            seq_write(d / "seq_fsync", fsync_each=True, max_bytes=max_bytes, max_secs=secs)
        )
        (d / "seq_fsync").unlink()
        results.append(seq_write(d / "seq", fsync_each=False, max_bytes=max_bytes, max_secs=secs))
        results.append(page_cache_read(d / "seq", max_secs=secs))
        (d / "seq").unlink()
        results.append(fsync_latency(d / "fsync4k", max_ops=2000 if quick else 5000, max_secs=secs))
    results.append(tcp_bandwidth(max_secs=secs))
    results.append(tcp_ping_pong(max_ops=10_000 if quick else 40_000, max_secs=secs))
    return results


def main() -> None:
    """CLI entry point: measure and print the machine-limit rows."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="shorter runs (about 4 s in total)")
    ap.add_argument("--dir", default=None, help="directory for the disk tests (default: $TMPDIR)")
    args = ap.parse_args()
    print_table(run(quick=args.quick, directory=args.dir), title="machine limits")


if __name__ == "__main__":
    main()
