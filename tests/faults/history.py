"""The history of a fault-injection run, as plain data (no I/O, no logic).

What the workload saw — every write attempt with its outcome (:class:`Attempt`), every answer of
a polling reader (:class:`Read`) — what the final read found once the faults were healed
(:class:`FinalRecord`), each replica's own view of every tablet (:class:`ReplicaState`), and the
faults that were injected (:class:`Fault`), gathered in a :class:`History` for
:func:`tests.faults.checker.check`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Outcome = Literal["ok", "fail", "info"]
"""``ok``: acknowledged; ``fail``: definitely not written; ``info``: unknown (indeterminate)."""

Position = tuple[int, int]
"""(tablet, offset)."""


@dataclass(frozen=True, slots=True)
class Attempt:
    """One produce request: its values all go to one tablet, in one batch."""

    id: str
    tablet: int
    values: tuple[str, ...]
    outcome: Outcome
    acked: tuple[Position, ...] = ()  # one per value when ``ok``
    started: float = 0.0  # monotonic seconds
    finished: float = 0.0
    node: str = ""
    error: str = ""
    sends: int = 1  # requests it took (idempotent writers resend the same batch)


@dataclass(frozen=True, slots=True)
class Read:
    """One poll answer of a reader: the records from ``asked`` onwards, as (offset, value)."""

    reader: str
    tablet: int
    asked: int
    records: tuple[tuple[int, str], ...]
    at: float = 0.0


@dataclass(frozen=True, slots=True)
class FinalRecord:
    offset: int
    value: str
    timestamp: int = 0
    key: str | None = None


@dataclass(frozen=True, slots=True)
class ReplicaState:
    """A replica's own view of a tablet (the digest endpoint), or why it could not be had."""

    node: str
    start_offset: int = 0
    end_offset: int = 0
    high_watermark: int = 0
    digest: str = ""
    error: str = ""


@dataclass(frozen=True, slots=True)
class Fault:
    """One injected fault: ``started`` when it hit, ``healed`` when it was undone."""

    kind: str
    target: str
    started: float
    healed: float
    detail: str = ""


@dataclass
class History:
    attempts: list[Attempt] = field(default_factory=list)
    reads: list[Read] = field(default_factory=list)
    #: tablet → its records as the final read found them (start offset first).
    final: dict[int, list[FinalRecord]] = field(default_factory=dict)
    #: tablet → the start offset the final read reported.
    final_start: dict[int, int] = field(default_factory=dict)
    #: tablet → why the final read failed (that tablet then counts as unreadable).
    final_errors: dict[int, str] = field(default_factory=dict)
    #: tablet → every replica's own view (None: not collected, the check is skipped).
    replicas: dict[int, list[ReplicaState]] | None = None
    faults: list[Fault] = field(default_factory=list)
