"""The common result record, the ratio table and the JSON output of ``make bench``.

Every benchmark (machine limits, tabletlog, NATS JetStream, pysyncobj) returns a list of
:class:`Result`. Rows of different systems are compared through their ``workload`` key: two rows
with the same key measured the same thing, so the table can print "tabletlog is N x the best NATS
configuration" without hand-matching. Use the key helpers below so the keys stay identical.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

RESULTS_DIR = Path(__file__).resolve().parent / "results"

#: System-name prefixes. A row belongs to a family if its ``system`` starts with the prefix.
TABLETLOG = "tabletlog"
NATS = "NATS"
PYSYNCOBJ = "pysyncobj"
MACHINE = "machine"

#: Families whose best row is shown as a ratio column next to every row of another family.
PEER_FAMILIES: tuple[tuple[str, str], ...] = (
    (NATS, "x best NATS"),
    (PYSYNCOBJ, "x best pysyncobj"),
)

#: Column showing a row's MB/s as a share of the machine row named by its ``machine_ref``.
MACHINE_COL = "of machine"

#: Workload keys of the machine-limit rows; a tabletlog row may point ``machine_ref`` at one.
MACHINE_SEQ_WRITE_FSYNC = "disk seq write 1 MiB + fsync each"
MACHINE_SEQ_WRITE = "disk seq write 1 MiB, fsync at end"
MACHINE_FSYNC_4K = "disk 4 KiB append + fsync"
MACHINE_READ = "disk seq read (page cache)"
MACHINE_TCP = "loopback TCP stream"
MACHINE_RTT = "loopback TCP ping-pong"

#: Workload key of the failover rows (p50 column = median, p99 column = max over trials).
FAILOVER = "failover: kill -9 leader -> first ack"


def size_label(size: int) -> str:
    """'100B', '1KiB', '64KiB': one spelling per payload size so keys match across systems."""
    if size >= 1024 and size % 1024 == 0:
        return f"{size // 1024}KiB"
    return f"{size}B"


def produce_key(size: int, window: int) -> str:
    """Key for 'publish/produce records of ``size`` bytes with ``window`` requests in flight'."""
    return f"produce {size_label(size)} w{window}"


def consume_key(size: int) -> str:
    """Key for 'read back records of ``size`` bytes from one stream/tablet as fast as possible'."""
    return f"consume {size_label(size)}"


def replicate_key(window: int, batch: int, size: int = 100) -> str:
    """Key for 'records through Raft at equal batching': ``batch`` records per command."""
    return f"replicate {size_label(size)} w{window} x{batch}"


@dataclass
class Result:
    """One measured row. ``None`` means "not meaningful for this workload", never zero.

    ``msgs_per_s`` counts records (payloads), not requests, so batched and unbatched rows of the
    same workload compare directly. ``mb_per_s`` is payload bytes only (10**6 bytes per MB).
    ``machine_ref`` optionally names a machine workload key whose MB/s this row is shown against.
    """

    name: str
    system: str
    workload: str
    msgs_per_s: float | None = None
    mb_per_s: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    notes: str = ""
    machine_ref: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (q in 0..100)."""
    if not sorted_values:
        return float("nan")
    idx = min(len(sorted_values) - 1, max(0, math.ceil(q / 100 * len(sorted_values)) - 1))
    return sorted_values[idx]


def latency_ms(samples_s: Iterable[float]) -> tuple[float | None, float | None]:
    """(p50, p99) in milliseconds of latency samples given in seconds; (None, None) if empty."""
    vals = sorted(samples_s)
    if not vals:
        return None, None
    return percentile(vals, 50) * 1e3, percentile(vals, 99) * 1e3


def family(system: str) -> str:
    """The family prefix of a system name (unknown systems are their own family)."""
    for prefix in (TABLETLOG, NATS, PYSYNCOBJ, MACHINE):
        if system.startswith(prefix):
            return prefix
    return system


def _ratio(row: Result, peers: list[Result]) -> str:
    """How many times better ``row`` is than the best peer row of the same workload (>1 = better).

    Throughput (records/s, else MB/s) is compared when both sides have it, otherwise p50 latency,
    inverted so that the ratio still reads "higher is better".
    """
    for attr in ("msgs_per_s", "mb_per_s"):
        mine = getattr(row, attr)
        theirs = [getattr(p, attr) for p in peers if getattr(p, attr)]
        if mine is not None and theirs:
            return f"{mine / max(theirs):.2f}x"
    theirs_lat = [p.p50_ms for p in peers if p.p50_ms]
    if row.p50_ms and theirs_lat:
        return f"{min(theirs_lat) / row.p50_ms:.2f}x (p50)"
    return ""


def ratio_columns(results: Sequence[Result]) -> list[dict[str, str]]:
    """For each row, the ratio strings against each peer family (and the machine reference)."""
    by_key: dict[tuple[str, str], list[Result]] = {}
    by_workload = {r.workload: r for r in results if family(r.system) == MACHINE}
    for r in results:
        by_key.setdefault((family(r.system), r.workload), []).append(r)
    out: list[dict[str, str]] = []
    for r in results:
        cols: dict[str, str] = {}
        fam = family(r.system)
        for peer_family, title in PEER_FAMILIES:
            peers = by_key.get((peer_family, r.workload), [])
            cols[title] = "" if fam in (peer_family, MACHINE) or not peers else _ratio(r, peers)
        ref = by_workload.get(r.machine_ref or "")
        if ref is not None and ref.mb_per_s and r.mb_per_s:
            cols[MACHINE_COL] = f"{100 * r.mb_per_s / ref.mb_per_s:.0f}%"
        else:
            cols[MACHINE_COL] = ""
        out.append(cols)
    return out


def _fmt(v: float | None) -> str:
    """Numbers to read at a glance: thousands separators, 3 significant digits when small."""
    if v is None:
        return "-"
    if math.isnan(v):
        return "nan"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3g}"


DURABILITY_NOTE = (
    "Durability differs: tabletlog acks=all means the batch is fsynced on every in-sync replica "
    "before the ack. NATS 2.9 JetStream acks once a quorum holds the message in memory (its "
    "filestore syncs every 2 min), and pysyncobj never fsyncs its journal. Ratios > 1 mean the "
    "row is better than the best peer row with the same workload key (records/s, else MB/s, "
    "else p50 latency)."
)


def print_table(
    results: Sequence[Result], title: str = "tabletlog bench", console: Console | None = None
) -> None:
    """Print every row, in the given order, with ratio columns and the durability caveat."""
    if console is None:
        # Piped output (make bench | tee) would otherwise be wrapped at 80 columns.
        console = Console(width=None if sys.stdout.isatty() else 230)
    ratios = ratio_columns(results)
    ratio_titles = [t for _, t in PEER_FAMILIES] + [MACHINE_COL]
    shown = [t for t in ratio_titles if any(c[t] for c in ratios)]
    table = Table(title=title, show_lines=False)
    table.add_column("system", no_wrap=True)
    table.add_column("workload", no_wrap=True)
    for col in ("msgs/s", "MB/s", "p50 ms", "p99 ms"):
        table.add_column(col, justify="right", no_wrap=True)
    for t in shown:
        table.add_column(t, justify="right")
    table.add_column("notes", overflow="fold")
    prev_family = None
    for r, cols in zip(results, ratios, strict=True):
        fam = family(r.system)
        if prev_family is not None and fam != prev_family:
            table.add_section()
        prev_family = fam
        notes = r.notes
        if cols[MACHINE_COL]:
            notes = f"MB/s vs machine '{r.machine_ref}'; {notes}".rstrip("; ")
        # Text(), not str: rich would read "[...]" in names or notes as markup and drop it.
        table.add_row(
            Text(r.system),
            Text(r.name),
            _fmt(r.msgs_per_s),
            _fmt(r.mb_per_s),
            _fmt(r.p50_ms),
            _fmt(r.p99_ms),
            *[cols[t] for t in shown],
            Text(notes),
        )
    console.print(table)
    if any(family(r.system) != MACHINE for r in results):
        console.print(DURABILITY_NOTE, style="dim")


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on, stored next to them in the JSON."""
    info: dict[str, Any] = {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
    }
    try:
        with Path("/proc/cpuinfo").open() as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
        with Path("/proc/meminfo").open() as f:
            info["mem_total"] = f.readline().split(":", 1)[1].strip()
    except OSError:
        pass
    return info


def write_json(
    results: Sequence[Result], path: Path | None = None, meta: dict[str, Any] | None = None
) -> Path:
    """Write the rows plus machine info to ``path`` (default bench/results/bench-<time>.json)."""
    if path is None:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        path = RESULTS_DIR / time.strftime("bench-%Y%m%d-%H%M%S.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine_info(),
        "meta": meta or {},
        "results": [asdict(r) for r in results],
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    tmp.replace(path)
    return path


def median(values: Iterable[float]) -> float:
    """statistics.median that tolerates an empty input (NaN), for trial summaries."""
    vals = list(values)
    return statistics.median(vals) if vals else float("nan")
