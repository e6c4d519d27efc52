"""Storage engine benchmark: TabletLog append and read throughput against the raw disk.

Every figure is a ratio against raw ``os.write`` / ``os.pread`` of the same number of bytes in
chunks of the same size, on the same disk, in the same run (the machines are shared and noisy:
only ratios within one run mean anything). Workloads:

* append, 100-byte records in batches of 1000 and 1 MiB batches, ``fsync: never`` (vs raw write)
  and ``fsync: always`` through GroupCommitter with a few concurrent appenders (vs raw write +
  fsync of each chunk by one writer: what a log without group commit would do);
* sequential read of the whole log with ``read(offset, 1 MiB)`` + ``read_bytes()``, with the CRC
  check of every returned batch (the default) and without it (vs raw 1 MiB preads, page cache).

Batches are built before timing (producer work, not the log's). Each workload stops at a byte
budget or a time limit, whichever comes first; the raw reference then writes exactly as many bytes.

Run: ``python -m bench.storage_bench [--quick] [--dir DIR] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from storage.batch import build_batch
from storage.config import FsyncPolicy, LogConfig
from storage.group_commit import GroupCommitter
from storage.log import TabletLog

MiB = 1 << 20


@dataclass
class Sample:
    """One timed run of a workload and of its raw reference over the same bytes."""

    bytes: int
    seconds: float
    records: int
    raw_seconds: float
    note: str = ""


@dataclass
class Row:
    """A workload's best sample (highest throughput) and the raw reference's best sample."""

    workload: str
    raw: str
    mb_per_s: float
    records_per_s: float
    raw_mb_per_s: float
    bytes: int
    note: str

    @property
    def ratio(self) -> float:
        return self.mb_per_s / self.raw_mb_per_s

    @classmethod
    def best(cls, workload: str, raw: str, samples: list[Sample]) -> Row:
        fastest = max(samples, key=lambda s: s.bytes / s.seconds)
        raw_best = max(s.bytes / s.raw_seconds for s in samples)
        return cls(workload, raw, fastest.bytes / fastest.seconds / 1e6,
                   fastest.records / fastest.seconds, raw_best / 1e6, fastest.bytes,
                   fastest.note)


@dataclass(frozen=True)
class Shape:
    name: str
    records: int
    value_bytes: int


SMALL = Shape("100 B records x 1000/batch", 1000, 100)
LARGE = Shape("1 MiB batches", 256, 4096)


def make_batches(shape: Shape, distinct: int = 4) -> list[bytes]:
    out = []
    for i in range(distinct):
        value = bytes([65 + i]) * shape.value_bytes
        out.append(build_batch([(b"key-%d" % j, value) for j in range(shape.records)]))
    return out


def settle() -> None:
    """Write back everything dirty so one workload's writeback does not slow the next."""
    os.sync()


# ----------------------------------------------------------------------------- raw references


def raw_write(path: Path, chunk: bytes, total: int, *, fsync_each: bool) -> float:
    """Seconds to write ``total`` bytes in ``chunk``-sized writes (fsync each, or none)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
    try:
        t0 = time.perf_counter()
        written = 0
        while written < total:
            written += os.write(fd, chunk)
            if fsync_each:
                os.fdatasync(fd)
        return time.perf_counter() - t0
    finally:
        os.close(fd)
        path.unlink()


def raw_read(files: list[Path], chunk: int) -> tuple[float, int]:
    """Seconds and bytes to pread every file sequentially in ``chunk``-sized reads."""
    total = 0
    t0 = time.perf_counter()
    for path in files:
        fd = os.open(path, os.O_RDONLY)
        try:
            pos = 0
            while data := os.pread(fd, chunk, pos):
                pos += len(data)
            total += pos
        finally:
            os.close(fd)
    return time.perf_counter() - t0, total


# ----------------------------------------------------------------------------- log workloads


def config(fsync: FsyncPolicy, *, verify_reads: bool = True) -> LogConfig:
    return LogConfig(segment_bytes=256 * MiB, fsync=fsync, retention_ms=None,
                     verify_reads=verify_reads)


def append_never(directory: Path, batches: list[bytes], budget: int, limit_s: float) -> Sample:
    log = TabletLog.open(directory, config("never"))
    written = records = i = 0
    t0 = time.perf_counter()
    deadline = t0 + limit_s
    while written < budget and time.perf_counter() < deadline:
        result = log.append_as_leader(batches[i % len(batches)], 0)
        written += result.size_bytes
        records += result.record_count
        i += 1
    elapsed = time.perf_counter() - t0
    log.close()
    settle()
    raw = raw_write(directory.parent / "raw", batches[0], written, fsync_each=False)
    settle()
    return Sample(written, elapsed, records, raw)


def append_always(
    directory: Path, batches: list[bytes], budget: int, limit_s: float, appenders: int
) -> Sample:
    log = TabletLog.open(directory, config("always"))
    totals = {"bytes": 0, "records": 0}

    async def appender(k: int, committer: GroupCommitter, deadline: float) -> None:
        i = k
        while totals["bytes"] < budget and time.perf_counter() < deadline:
            result = log.append_as_leader(batches[i % len(batches)], 0)
            totals["bytes"] += result.size_bytes
            totals["records"] += result.record_count
            i += appenders
            await committer.wait_durable(result.end_offset)

    async def run() -> float:
        committer = GroupCommitter(log)
        t0 = time.perf_counter()
        await asyncio.gather(*(appender(k, committer, t0 + limit_s) for k in range(appenders)))
        elapsed = time.perf_counter() - t0
        await committer.close()
        return elapsed

    elapsed = asyncio.run(run())
    flushes = log.stats.flushes
    log.close()
    settle()
    raw = raw_write(directory.parent / "raw", batches[0], totals["bytes"], fsync_each=True)
    settle()
    note = f"{appenders} appenders, {flushes} flushes"
    return Sample(totals["bytes"], elapsed, totals["records"], raw, note)


def read_log(directory: Path, *, verify: bool, limit_s: float) -> Sample:
    log = TabletLog.open(directory, config("never", verify_reads=verify))
    offset, total, records = log.start_offset, 0, 0
    t0 = time.perf_counter()
    deadline = t0 + limit_s
    while time.perf_counter() < deadline:
        result = log.read(offset, MiB)
        if result.is_empty:
            break
        total += len(result.read_bytes())
        records += result.end_offset - max(result.first_offset, offset)
        offset = result.end_offset
    elapsed = time.perf_counter() - t0
    log.close()
    files = sorted(directory.glob("*.log"))
    raw_s, raw_total = raw_read(files, MiB)
    scaled = raw_s * total / raw_total if raw_total else raw_s
    return Sample(total, elapsed, records, scaled)


# ----------------------------------------------------------------------------- driver


def warm_up(root: Path, budget: int) -> None:
    """Touch the page cache memory once: a VM's first use of fresh guest memory is much slower
    than reuse, and whichever workload ran first would pay for it."""
    chunk = os.urandom(MiB)
    for _ in range(2):
        raw_write(root / "warm", chunk, budget, fsync_each=False)
        settle()


def run(quick: bool, root: Path) -> list[Row]:
    """Every workload ``reps`` times, alternating with its raw reference; best of each."""
    never_budget = (128 if quick else 512) * MiB
    always_budget = (32 if quick else 128) * MiB
    limit_s = 4.0 if quick else 10.0
    reps = 2 if quick else 3
    warm_up(root, never_budget)
    rows: list[Row] = []
    for shape in (SMALL, LARGE):
        batches = make_batches(shape)
        log_dir = root / f"log-{shape.records}"
        samples = []
        for _ in range(reps):
            shutil.rmtree(log_dir, ignore_errors=True)
            samples.append(append_never(log_dir, batches, never_budget, limit_s))
        rows.append(Row.best(f"append {shape.name}, fsync never", "write", samples))
        for verify in (True, False):
            reads = [read_log(log_dir, verify=verify, limit_s=limit_s) for _ in range(reps)]
            check = "CRC checked" if verify else "no CRC check"
            rows.append(Row.best(f"read {shape.name}, {check}", "pread (page cache)", reads))
        shutil.rmtree(log_dir)
        samples = []
        for _ in range(reps):
            shutil.rmtree(log_dir, ignore_errors=True)
            samples.append(append_always(log_dir, batches, always_budget, limit_s, 4))
        rows.append(Row.best(f"append {shape.name}, fsync always", "write+fdatasync", samples))
        shutil.rmtree(log_dir)
        print(f"[storage_bench] {shape.name} done", file=sys.stderr, flush=True)
    return rows


def print_rows(rows: list[Row]) -> None:
    header = (f"{'workload':<45} {'MB/s':>7} {'records/s':>11} {'raw MB/s':>9} {'ratio':>6}  "
              f"{'raw reference':<20} notes")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r.workload:<45} {r.mb_per_s:>7.0f} {r.records_per_s:>11,.0f} "
              f"{r.raw_mb_per_s:>9.0f} {r.ratio:>6.0%}  {r.raw:<20} {r.bytes / MiB:.0f} MiB"
              f"{'; ' + r.note if r.note else ''}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="smaller budgets (about 30 s)")
    ap.add_argument("--dir", type=Path, default=None,
                    help="directory on the disk to measure (default: the system temp dir)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    args = ap.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="storage-bench-", dir=args.dir))
    try:
        rows = run(args.quick, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print_rows(rows)
    if args.json is not None:
        doc = {
            "quick": args.quick, "machine": platform.node(), "python": sys.version.split()[0],
            "rows": [{**asdict(r), "ratio": r.ratio} for r in rows],
        }
        args.json.write_text(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
