"""Storage engine benchmark: TabletLog append and read throughput against the raw disk.

Every figure is compared with raw ``os.write`` / ``os.pread`` of the same bytes in chunks of the
same size, on the same disk, in the same run. The machines are shared and noisy, so the log and
its raw reference are measured in *paired rounds*: each round does 32 MiB through the log, then
the same number of bytes raw, and the ratio reported is the median of the rounds' ratios (a
noise spike hits one round, not a whole workload). Workloads:

* append, 100-byte records in batches of 1000 and 1 MiB batches, ``fsync: never`` (vs raw write,
  no fsync) and ``fsync: always`` through GroupCommitter with 4 concurrent appenders (vs one
  writer doing write + fdatasync per chunk, i.e. a log without group commit);
* sequential read of the log with ``read(offset, 1 MiB)`` + ``read_bytes()``, with the CRC check
  of every returned batch (the default) and without it (vs raw 1 MiB preads; page cache).

Batches are built before timing (that is the producer's work) and cycled; the raw writer cycles
through the same buffers. Each workload stops at a byte budget or a time limit.

Run: ``python -m bench.storage_bench [--quick] [--dir DIR] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

from storage.config import FsyncPolicy, LogConfig
from storage.group_commit import GroupCommitter
from storage.log import TabletLog
from wire.batch import build_batch

MiB = 1 << 20
ROUND_BYTES = 32 * MiB


@dataclass(frozen=True)
class Shape:
    name: str
    records: int
    value_bytes: int


SMALL = Shape("100 B records x 1000/batch", 1000, 100)
LARGE = Shape("1 MiB batches", 256, 4096)


@dataclass
class Row:
    """One workload: totals of the log's and the raw reference's rounds."""

    workload: str
    raw: str
    bytes: int = 0
    records: int = 0
    log_s: float = 0.0
    raw_s: float = 0.0
    round_ratios: list[float] = field(default_factory=list)
    note: str = ""

    def add(self, nbytes: int, records: int, log_s: float, raw_s: float) -> None:
        self.bytes += nbytes
        self.records += records
        self.log_s += log_s
        self.raw_s += raw_s
        self.round_ratios.append(raw_s / log_s)

    @property
    def mb_per_s(self) -> float:
        return self.bytes / self.log_s / 1e6

    @property
    def raw_mb_per_s(self) -> float:
        return self.bytes / self.raw_s / 1e6

    @property
    def ratio(self) -> float:
        """Median over rounds of (raw time / log time) = log throughput as a share of raw."""
        return statistics.median(self.round_ratios)


def make_batches(shape: Shape, distinct: int = 4) -> list[bytes]:
    out = []
    for i in range(distinct):
        value = bytes([65 + i]) * shape.value_bytes
        out.append(build_batch([(b"key-%d" % j, value) for j in range(shape.records)]))
    return out


def config(fsync: FsyncPolicy, *, verify_reads: bool = True) -> LogConfig:
    return LogConfig(
        segment_bytes=256 * MiB, fsync=fsync, retention_ms=None, verify_reads=verify_reads
    )


class RawWriter:
    """The raw reference for appends: one O_APPEND file, one write (+ fdatasync) per chunk."""

    def __init__(self, path: Path, chunks: list[bytes], *, fsync_each: bool) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
        self.chunks = chunks
        self.fsync_each = fsync_each
        self.i = 0

    def write(self, nbytes: int) -> float:
        t0 = time.perf_counter()
        written = 0
        while written < nbytes:
            written += os.write(self.fd, self.chunks[self.i % len(self.chunks)])
            self.i += 1
            if self.fsync_each:
                os.fdatasync(self.fd)
        return time.perf_counter() - t0

    def close(self) -> None:
        os.close(self.fd)


class RawReader:
    """The raw reference for reads: 1 MiB preads through the log's segment files, cycling."""

    def __init__(self, files: list[Path]) -> None:
        self.fds = [os.open(p, os.O_RDONLY) for p in files]
        self.index = self.position = 0

    def read(self, nbytes: int) -> float:
        t0 = time.perf_counter()
        done = 0
        while done < nbytes:
            data = os.pread(self.fds[self.index], min(MiB, nbytes - done), self.position)
            if not data:
                self.index, self.position = (self.index + 1) % len(self.fds), 0
                continue
            done += len(data)
            self.position += len(data)
        return time.perf_counter() - t0

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)


# ----------------------------------------------------------------------------- workloads


def append_never(
    row: Row, directory: Path, batches: list[bytes], budget: int, limit_s: float
) -> None:
    log = TabletLog.open(directory, config("never"))
    raw = RawWriter(directory.parent / "raw", batches, fsync_each=False)
    per_round = max(1, ROUND_BYTES // len(batches[0]))
    deadline = time.perf_counter() + limit_s
    i = 0
    while row.bytes < budget and time.perf_counter() < deadline:
        nbytes = records = 0
        t0 = time.perf_counter()
        for _ in range(per_round):
            result = log.append_as_leader(batches[i % len(batches)], 0)
            nbytes += result.size_bytes
            records += result.record_count
            i += 1
        log_s = time.perf_counter() - t0
        row.add(nbytes, records, log_s, raw.write(nbytes))
    raw.close()
    (directory.parent / "raw").unlink()
    log.close()


def read_log(row: Row, directory: Path, budget: int, limit_s: float, *, verify: bool) -> None:
    log = TabletLog.open(directory, config("never", verify_reads=verify))
    raw = RawReader(sorted(directory.glob("*.log")))
    offset = log.start_offset
    deadline = time.perf_counter() + limit_s
    while row.bytes < budget and time.perf_counter() < deadline:
        nbytes = records = 0
        t0 = time.perf_counter()
        while nbytes < ROUND_BYTES:
            result = log.read(offset, MiB)
            if result.is_empty:
                offset = log.start_offset
                continue
            nbytes += len(result.read_bytes())
            records += result.end_offset - max(result.first_offset, offset)
            offset = result.end_offset
        log_s = time.perf_counter() - t0
        row.add(nbytes, records, log_s, raw.read(nbytes))
    raw.close()
    log.close()


def append_always(
    row: Row, directory: Path, batches: list[bytes], budget: int, limit_s: float, appenders: int
) -> None:
    log = TabletLog.open(directory, config("always"))
    raw = RawWriter(directory.parent / "raw", batches, fsync_each=True)
    counter = {"i": 0, "bytes": 0, "records": 0}

    async def appender(committer: GroupCommitter, round_end: int) -> None:
        while counter["bytes"] < round_end:
            result = log.append_as_leader(batches[counter["i"] % len(batches)], 0)
            counter["i"] += 1
            counter["bytes"] += result.size_bytes
            counter["records"] += result.record_count
            await committer.wait_durable(result.end_offset)

    async def rounds() -> None:
        committer = GroupCommitter(log)
        deadline = time.perf_counter() + limit_s
        while row.bytes < budget and time.perf_counter() < deadline:
            before_bytes, before_records = counter["bytes"], counter["records"]
            round_end = before_bytes + ROUND_BYTES
            t0 = time.perf_counter()
            await asyncio.gather(*(appender(committer, round_end) for _ in range(appenders)))
            log_s = time.perf_counter() - t0
            nbytes = counter["bytes"] - before_bytes
            row.add(nbytes, counter["records"] - before_records, log_s, raw.write(nbytes))
        await committer.close()

    asyncio.run(rounds())
    row.note = f"{appenders} appenders, {log.stats.flushes} flushes for {counter['i']} appends"
    raw.close()
    (directory.parent / "raw").unlink()
    log.close()


# ----------------------------------------------------------------------------- driver


def run(quick: bool, root: Path) -> list[Row]:
    """Every workload once, in paired rounds; see the module docstring."""
    never_budget = (256 if quick else 1024) * MiB
    always_budget = (32 if quick else 96) * MiB
    limit_s = 5.0 if quick else 15.0
    rows: list[Row] = []

    def measure(row: Row, work: Callable[[Row], None]) -> None:
        os.sync()  # earlier workloads' writeback must not land in this one
        print(f"[storage_bench] {row.workload} ...", file=sys.stderr, flush=True)
        work(row)
        rows.append(row)

    for shape in (SMALL, LARGE):
        batches = make_batches(shape)
        d = root / f"log-{shape.records}"
        measure(
            Row(f"append {shape.name}, fsync never", "write"),
            partial(
                append_never, directory=d, batches=batches, budget=never_budget, limit_s=limit_s
            ),
        )
        for verify in (True, False):
            measure(
                Row(
                    f"read {shape.name}, {'CRC checked' if verify else 'no CRC check'}",
                    "pread (page cache)",
                ),
                partial(read_log, directory=d, budget=never_budget, limit_s=limit_s, verify=verify),
            )
        shutil.rmtree(d)
        measure(
            Row(f"append {shape.name}, fsync always", "write+fdatasync"),
            partial(
                append_always,
                directory=d,
                batches=batches,
                budget=always_budget,
                limit_s=limit_s,
                appenders=4,
            ),
        )
        shutil.rmtree(d)
    return rows


def print_rows(rows: list[Row]) -> None:
    header = (
        f"{'workload':<45} {'MB/s':>7} {'records/s':>11} {'raw MB/s':>9} {'ratio':>6}  "
        f"{'raw reference':<19} notes"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        spread = f"rounds {min(r.round_ratios):.0%}..{max(r.round_ratios):.0%}"
        print(
            f"{r.workload:<45} {r.mb_per_s:>7.0f} {r.records / r.log_s:>11,.0f} "
            f"{r.raw_mb_per_s:>9.0f} {r.ratio:>6.0%}  {r.raw:<19} {r.bytes / MiB:.0f} MiB, "
            f"{spread}{'; ' + r.note if r.note else ''}"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="TabletLog append/read throughput vs the raw disk")
    ap.add_argument("--quick", action="store_true", help="smaller budgets (about 15 s)")
    ap.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="directory on the disk to measure (default: the system temp dir)",
    )
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
            "quick": args.quick,
            "machine": platform.node(),
            "python": sys.version.split()[0],
            "round_bytes": ROUND_BYTES,
            "rows": [
                {
                    **asdict(r),
                    "mb_per_s": r.mb_per_s,
                    "raw_mb_per_s": r.raw_mb_per_s,
                    "ratio": r.ratio,
                }
                for r in rows
            ],
        }
        args.json.write_text(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
