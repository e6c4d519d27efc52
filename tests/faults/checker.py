"""A Jepsen-style checker for a replicated log's history (pure: no I/O, no clock, no threads).

The history of one run (:class:`History`, see :mod:`tests.faults.history`) holds what the
workload saw — every write attempt with its outcome, every answer of a polling reader — what the
final read found once the faults were healed, each replica's own digest of every tablet, and the
faults that were injected. The checker (:func:`check`) looks for the anomalies the product
promise (docs/architecture.md#the-promise) rules out, after the Kafka checker of Jepsen
(``jepsen/tests/kafka.clj``):

* **lost** — an acknowledged (``acks=all``) record is not in the final read at the offset it was
  acknowledged at (missing, or moved elsewhere);
* **duplicated** — a value seen (by a reader or in the final read) at more than one offset;
* **divergent offsets** — one (tablet, offset) seen or acknowledged with two different values;
* **vanished** — a value a reader saw that is absent from the final state (a committed read that
  was later lost; G1a-like);
* **unexpected** — a value seen that no attempt ever wrote (corruption served, say);
* **aborted** — a value seen whose write failed *definitely* (4xx, ``not_enough_replicas``,
  ``no_leader``: the contract says nothing was written);
* **torn** — an attempt (one batch, one tablet) present only in part in the final read;
* **read anomalies** — a poll answer whose offsets do not start at the asked offset and run
  contiguously, or a final read that is not contiguous from the start offset;
* **replica divergence** — a tablet whose replicas disagree, among themselves or with the final
  read, on start offset, high watermark or digest (the digest is recomputed here from the final
  read with the product's formula, so no replica is trusted).

Writes whose outcome is unknown (timeouts) may or may not be present; each of their values at
most once (duplicates are counted like any other). Their presence is reported, not judged.
Recovery time of a fault: from the moment it was injected to the first acknowledged write of
an attempt started after it, on every tablet (the slowest tablet counts).

What a check finds goes into a :class:`Report` (:mod:`tests.faults.report`: the counts, a few
examples of each anomaly, the recoveries, and the table a run prints).
"""

from __future__ import annotations

import hashlib
import struct
from collections import defaultdict
from collections.abc import Iterable, Sequence

from tests.faults.history import (
    Attempt,
    Fault,
    FinalRecord,
    History,
    Outcome,
    Position,
    Read,
    ReplicaState,
)
from tests.faults.report import EXAMPLES, Recovery, Report

__all__ = [
    "EXAMPLES",
    "Attempt",
    "Fault",
    "FinalRecord",
    "History",
    "Outcome",
    "Position",
    "Read",
    "Recovery",
    "ReplicaState",
    "Report",
    "check",
    "digest_of",
    "recoveries",
]

_DIGEST_FIELDS = struct.Struct(">qq")
_LENGTH = struct.Struct(">i")


def digest_of(records: Iterable[FinalRecord]) -> str:
    """The replica digest (docs/openapi.yaml) of these records (as ``node/consume.py``)."""
    digest = hashlib.sha256()
    for record in records:
        digest.update(_DIGEST_FIELDS.pack(record.offset, record.timestamp))
        for part in (record.key, record.value):
            raw = None if part is None else part.encode()
            digest.update(_LENGTH.pack(-1 if raw is None else len(raw)))
            if raw is not None:
                digest.update(raw)
    return digest.hexdigest()


def check(history: History) -> Report:
    """Every anomaly of the module docstring, counted, with a few examples each."""
    report = Report()
    by_value: dict[str, Attempt] = {}
    for attempt in history.attempts:
        for value in attempt.values:
            by_value[value] = attempt
    _count_attempts(report, history.attempts)

    # Where each value was seen, and what each position was seen holding.
    seen_at: dict[str, set[Position]] = defaultdict(set)
    held: dict[Position, set[str]] = defaultdict(set)
    final_at: dict[Position, str] = {}
    final_positions: dict[str, list[Position]] = defaultdict(list)
    for tablet, records in history.final.items():
        for record in records:
            pos = (tablet, record.offset)
            final_at[pos] = record.value
            final_positions[record.value].append(pos)
            seen_at[record.value].add(pos)
            held[pos].add(record.value)
    read_values: set[str] = set()
    for read in history.reads:
        report.reads += 1
        report.records_read += len(read.records)
        for offset, value in read.records:
            pos = (read.tablet, offset)
            seen_at[value].add(pos)
            held[pos].add(value)
            read_values.add(value)
    for attempt in history.attempts:
        if attempt.outcome == "ok":
            for value, pos in zip(attempt.values, attempt.acked, strict=True):
                held[pos].add(value)
    report.final_records = len(final_at)

    readable = {t for t in history.final if t not in history.final_errors}
    report.unreadable_tablets = len(history.final_errors)
    for tablet, error in sorted(history.final_errors.items()):
        report.note("unreadable_tablets", f"tablet {tablet}: {error}")

    _check_lost(report, history.attempts, final_at, final_positions, readable)
    for value, positions in seen_at.items():
        if len(positions) > 1:
            report.duplicated += 1
            report.note("duplicated", f"{value!r} at {sorted(positions)}")
    for pos, values in sorted(held.items()):
        if len(values) > 1:
            report.divergent_offsets += 1
            report.note("divergent_offsets", f"{pos}: {sorted(values)}")
    for value in sorted(read_values):
        tablet = next(iter(seen_at[value]))[0]
        if value not in final_positions and tablet in readable:
            report.vanished += 1
            report.note("vanished", f"{value!r} read at {sorted(seen_at[value])}, not in final")
    for value in sorted(seen_at):
        writer = by_value.get(value)
        if writer is None:
            report.unexpected += 1
            report.note("unexpected", f"{value!r} at {sorted(seen_at[value])}")
        elif writer.outcome == "fail":
            report.aborted += 1
            report.note(
                "aborted",
                f"{value!r} at {sorted(seen_at[value])} (attempt "
                f"{writer.id} failed: {writer.error})",
            )
    _check_attempts_in_final(report, history.attempts, final_positions, readable)
    _check_reads(report, history)
    _check_replicas(report, history)
    report.recoveries = recoveries(history.faults, history.attempts)
    return report


def _count_attempts(report: Report, attempts: Sequence[Attempt]) -> None:
    report.ops = len(attempts)
    for attempt in attempts:
        if attempt.outcome == "ok":
            report.acked_attempts += 1
            report.acked += len(attempt.values)
        elif attempt.outcome == "fail":
            report.failed_attempts += 1
        else:
            report.indeterminate_attempts += 1
        if attempt.outcome != "ok":
            report.errors[attempt.outcome][" ".join(attempt.error.split()[:2])] += 1


def _check_lost(
    report: Report,
    attempts: Sequence[Attempt],
    final_at: dict[Position, str],
    final_positions: dict[str, list[Position]],
    readable: set[int],
) -> None:
    for attempt in attempts:
        if attempt.outcome != "ok":
            continue
        for value, pos in zip(attempt.values, attempt.acked, strict=True):
            if pos[0] not in readable or final_at.get(pos) == value:
                continue
            report.lost += 1
            elsewhere = final_positions.get(value)
            where = f"found at {elsewhere}" if elsewhere else "absent"
            report.note(
                "lost",
                f"{value!r} acked at {pos}: final holds "
                f"{final_at.get(pos)!r} there; {where} (attempt {attempt.id}, "
                f"acked at t={attempt.finished:.2f})",
            )


def _check_attempts_in_final(
    report: Report,
    attempts: Sequence[Attempt],
    final_positions: dict[str, list[Position]],
    readable: set[int],
) -> None:
    for attempt in attempts:
        if attempt.tablet not in readable:
            continue
        present = sum(1 for v in attempt.values if v in final_positions)
        if 0 < present < len(attempt.values):
            report.torn += 1
            report.note(
                "torn",
                f"attempt {attempt.id} ({attempt.outcome}): {present} of "
                f"{len(attempt.values)} values in the final read",
            )
        if attempt.outcome == "info":
            if present:
                report.indeterminate_present += 1
            else:
                report.indeterminate_absent += 1


def _check_reads(report: Report, history: History) -> None:
    for read in history.reads:
        offsets = [offset for offset, _ in read.records]
        expected = list(range(read.asked, read.asked + len(offsets)))
        if offsets != expected:
            report.read_anomalies += 1
            report.note(
                "read_anomalies",
                f"{read.reader} asked tablet {read.tablet} from "
                f"{read.asked}, got offsets {_span(offsets)} at t={read.at:.2f}",
            )
    for tablet, records in sorted(history.final.items()):
        start = history.final_start.get(tablet, records[0].offset if records else 0)
        offsets = [r.offset for r in records]
        if offsets != list(range(start, start + len(offsets))):
            report.read_anomalies += 1
            report.note(
                "read_anomalies",
                f"final read of tablet {tablet} from {start}: "
                f"offsets {_span(offsets)} are not contiguous",
            )


def _check_replicas(report: Report, history: History) -> None:
    if history.replicas is None:
        return
    for tablet, states in sorted(history.replicas.items()):
        if tablet in history.final_errors:
            continue
        records = history.final.get(tablet, [])
        start = history.final_start.get(tablet, records[0].offset if records else 0)
        expected = (start, start + len(records), digest_of(records))
        wrong = [
            s for s in states if s.error or (s.start_offset, s.high_watermark, s.digest) != expected
        ]
        if wrong:
            report.replica_divergence += 1
            shown = ", ".join(
                f"{s.node}: {s.error}"
                if s.error
                else f"{s.node}: start {s.start_offset} hw {s.high_watermark} end {s.end_offset} "
                f"digest {s.digest[:12]}"
                for s in states
            )
            report.note(
                "replica_divergence",
                f"tablet {tablet}: final read has start "
                f"{expected[0]} hw {expected[1]} digest {expected[2][:12]}; {shown}",
            )


def recoveries(faults: Sequence[Fault], attempts: Sequence[Attempt]) -> list[Recovery]:
    """Per fault: time from injection to an acknowledged write on every tablet after it."""
    tablets = sorted({a.tablet for a in attempts})
    acks: dict[int, list[Attempt]] = {t: [] for t in tablets}
    for attempt in attempts:
        if attempt.outcome == "ok":
            acks[attempt.tablet].append(attempt)
    for tablet_acks in acks.values():
        tablet_acks.sort(key=lambda a: a.started)
    out: list[Recovery] = []
    for fault in faults:
        slowest: float | None = 0.0
        for tablet in tablets:
            after = [a.finished for a in acks[tablet] if a.started >= fault.started]
            if not after:
                slowest = None
                break
            assert slowest is not None
            slowest = max(slowest, min(after) - fault.started)
        out.append(Recovery(fault, slowest if tablets else None))
    return out


def _span(offsets: Sequence[int]) -> str:
    if len(offsets) <= 6:
        return str(list(offsets))
    return f"[{offsets[0]}, {offsets[1]}, {offsets[2]}, …, {offsets[-1]}] ({len(offsets)})"
