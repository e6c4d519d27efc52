"""What the fault-injection checker found: counts, anomaly examples, recovery times, the table.

:func:`tests.faults.checker.check` fills a :class:`Report` (the anomalies are defined in that
module's docstring) and :func:`tests.faults.checker.recoveries` its :class:`Recovery` rows;
``Report.table`` is the text a run prints. Pure data and formatting: no I/O, no clock, no
threads (one checker fills a report, then it is only read).
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from tests.faults.history import Fault

__all__ = ["EXAMPLES", "Recovery", "Report"]

EXAMPLES = 5
"""How many examples of each anomaly a report keeps."""


@dataclass(frozen=True, slots=True)
class Recovery:
    fault: Fault
    seconds: float | None  # None: some tablet never took an acknowledged write after it


@dataclass
class Report:
    """What the checker found; ``ok`` when no anomaly was found."""

    ops: int = 0
    acked: int = 0  # acknowledged records
    acked_attempts: int = 0
    failed_attempts: int = 0
    indeterminate_attempts: int = 0
    reads: int = 0  # poll answers
    records_read: int = 0
    final_records: int = 0
    lost: int = 0
    duplicated: int = 0
    divergent_offsets: int = 0
    vanished: int = 0
    unexpected: int = 0
    aborted: int = 0
    torn: int = 0
    read_anomalies: int = 0
    replica_divergence: int = 0  # tablets
    unreadable_tablets: int = 0
    indeterminate_present: int = 0
    indeterminate_absent: int = 0
    recoveries: list[Recovery] = field(default_factory=list)
    #: "fail"/"info" → error code (status and code of the answer) → attempts.
    errors: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    ANOMALIES = (
        "lost",
        "duplicated",
        "divergent_offsets",
        "vanished",
        "unexpected",
        "aborted",
        "torn",
        "read_anomalies",
        "replica_divergence",
        "unreadable_tablets",
    )

    @property
    def ok(self) -> bool:
        return all(getattr(self, name) == 0 for name in self.ANOMALIES)

    @property
    def faults(self) -> int:
        return len(self.recoveries)

    def anomalies(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.ANOMALIES if getattr(self, name)}

    def note(self, kind: str, example: str) -> None:
        if len(self.examples[kind]) < EXAMPLES:
            self.examples[kind].append(example)

    def table(self, title: str = "fault-injection run") -> str:
        """The result as text: a summary table, a table per fault kind, the anomaly examples."""
        rows: list[tuple[str, str]] = [
            ("ops (write attempts)", str(self.ops)),
            ("acked records (attempts)", f"{self.acked} ({self.acked_attempts})"),
            ("failed attempts (nothing written)", str(self.failed_attempts)),
            ("indeterminate attempts", str(self.indeterminate_attempts)),
            ("  present / absent", f"{self.indeterminate_present} / {self.indeterminate_absent}"),
            ("poll answers (records read)", f"{self.reads} ({self.records_read})"),
            ("final records", str(self.final_records)),
            ("faults injected", str(self.faults)),
        ]
        rows += [(name.replace("_", " "), str(getattr(self, name))) for name in self.ANOMALIES]
        rows.append(("verdict", "OK" if self.ok else "ANOMALIES FOUND"))
        width = max(len(k) for k, _ in rows)
        lines = [f"== {title} ==", *(f"  {k.ljust(width)}  {v}" for k, v in rows)]
        for outcome, label in (("fail", "failed by"), ("info", "indeterminate by")):
            if self.errors.get(outcome):
                shown = ", ".join(f"{k} ×{n}" for k, n in self.errors[outcome].most_common(8))
                lines.append(f"  {label}: {shown}")
        if self.recoveries:
            lines.append(self._fault_table())
        for kind, examples in self.examples.items():
            lines.append(f"  {kind}:")
            lines.extend(f"    - {e}" for e in examples)
        return "\n".join(lines)

    def _fault_table(self) -> str:
        by_kind: dict[str, list[Recovery]] = defaultdict(list)
        for recovery in self.recoveries:
            by_kind[recovery.fault.kind].append(recovery)
        header = (
            "fault",
            "count",
            "held s (med)",
            "recovery s min",
            "median",
            "max",
            "unrecovered",
        )
        body: list[tuple[str, ...]] = []
        for kind in sorted(by_kind):
            recs = by_kind[kind]
            held = statistics.median(r.fault.healed - r.fault.started for r in recs)
            secs = sorted(r.seconds for r in recs if r.seconds is not None)
            stats = (
                (f"{secs[0]:.2f}", f"{statistics.median(secs):.2f}", f"{secs[-1]:.2f}")
                if secs
                else ("-", "-", "-")
            )
            body.append(
                (
                    kind,
                    str(len(recs)),
                    f"{held:.2f}",
                    *stats,
                    str(sum(r.seconds is None for r in recs)),
                )
            )
        widths = [max(len(row[i]) for row in (header, *body)) for i in range(len(header))]
        fmt = "  | " + " | ".join(f"{{:{w}}}" for w in widths) + " |"
        rule = "  |" + "|".join("-" * (w + 2) for w in widths) + "|"
        return "\n".join([fmt.format(*header), rule, *(fmt.format(*row) for row in body)])
