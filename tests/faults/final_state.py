"""The state of a log once a fault-injection run is over, read back over HTTP.

:func:`final_read` reads every committed record of every tablet from its start offset (through
any node, retrying while nodes recover); :func:`replica_states` asks each replica's node for
that replica's own view of a tablet (offsets and digest). Both feed
:class:`tests.faults.history.History`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from testkit.http import call
from tests.faults.answers import error_code, record_value
from tests.faults.history import FinalRecord, ReplicaState


@dataclass
class FinalRead:
    records: dict[int, list[FinalRecord]]
    start: dict[int, int]
    high_watermark: dict[int, int]
    errors: dict[int, str]


def final_read(
    urls: Mapping[str, str], log: str, tablets: int, timeout_s: float = 60.0
) -> FinalRead:
    """Every committed record of every tablet, from its start offset, through any node."""
    out = FinalRead({}, {}, {}, {})
    for tablet in range(tablets):
        try:
            start, hw, records = _read_tablet(urls, log, tablet, timeout_s)
        except AssertionError as exc:
            out.errors[tablet] = str(exc)
            out.records[tablet] = []
            continue
        out.records[tablet] = records
        out.start[tablet] = start
        out.high_watermark[tablet] = hw
    return out


def _read_tablet(
    urls: Mapping[str, str], log: str, tablet: int, timeout_s: float
) -> tuple[int, int, list[FinalRecord]]:
    nodes = sorted(urls)
    records: list[FinalRecord] = []
    offset = 0
    start: int | None = None
    deadline = time.monotonic() + timeout_s
    last = ""
    attempt = 0
    while True:
        node = nodes[attempt % len(nodes)]
        url = (
            f"{urls[node]}/v1/logs/{log}/tablets/{tablet}/records?offset={offset}&max_records=5000"
        )
        answer = call("GET", url, timeout_s=10)
        body = answer.body
        if (
            answer.status == 400
            and isinstance(body, dict)
            and body.get("error") == "offset_out_of_range"
            and start is None
        ):
            offset = int(body["start_offset"])  # the log starts later (retention)
            start = offset
            continue
        if answer.status != 200 or not isinstance(body, dict):
            last = f"{node}: {answer.status} {error_code(answer)} {body!r}"
            attempt += 1
            if time.monotonic() > deadline:
                raise AssertionError(f"tablet {tablet} unreadable at offset {offset}: {last}")
            time.sleep(0.2)
            continue
        if start is None:
            start = int(body["start_offset"])
        for r in body["records"]:
            records.append(
                FinalRecord(int(r["offset"]), record_value(r), int(r["timestamp"]), r.get("key"))
            )
        next_offset = int(body["next_offset"])
        hw = int(body["high_watermark"])
        if next_offset >= hw or not body["records"]:
            return start, hw, records
        offset = next_offset


def replica_states(
    urls: Mapping[str, str], log: str, tablet: int, replicas: Sequence[str]
) -> list[ReplicaState]:
    """Each replica's own view of the tablet, asked of that replica's node."""
    states: list[ReplicaState] = []
    for node in replicas:
        answer = call(
            "GET", f"{urls[node]}/v1/logs/{log}/tablets/{tablet}/replicas/{node}", timeout_s=10
        )
        body = answer.body
        if answer.status != 200 or not isinstance(body, dict):
            states.append(ReplicaState(node, error=f"{answer.status} {error_code(answer)}"))
            continue
        states.append(
            ReplicaState(
                node,
                int(body["start_offset"]),
                int(body["end_offset"]),
                int(body["high_watermark"]),
                str(body["digest"]),
            )
        )
    return states
