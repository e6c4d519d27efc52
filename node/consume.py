"""Consume: read committed batches (below the high watermark) from the tablet leader.

Reads are served by the leader — the only replica whose high watermark is authoritative — and
long-poll until the high watermark passes the asked offset or ``wait_ms`` runs out. The batch
bytes go out as stored (binary endpoint) or decoded into JSON records. Also the replica digest,
which is computed on the replica itself so that replicas can be compared without trusting any
one of them. Event-loop thread only.
"""

from __future__ import annotations

import base64
import hashlib
import struct
import time
from dataclasses import dataclass
from typing import Any

from replication.errors import HighWatermarkNotRestored
from replication.leader import TabletLeader
from storage.errors import OffsetOutOfRange
from storage.log import TabletLog
from wire.batch import Record, iter_records

MAX_READ_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ReadOutcome:
    """Whole batches read from ``first_offset`` (≤ the asked offset) to ``end_offset``."""

    data: bytes
    asked_offset: int
    next_offset: int
    high_watermark: int
    start_offset: int


async def read_committed(
    leader: TabletLeader, offset: int, max_bytes: int, wait_ms: int
) -> ReadOutcome:
    """Batches holding ``offset`` onwards, below the high watermark; long-polls up to ``wait_ms``.

    Raises OffsetOutOfRange if ``offset`` is below the start offset or above the end offset,
    and HighWatermarkNotRestored (503 ``not_ready``, retriable) when the leader has not restored
    its high watermark within ``wait_ms`` (``TabletLeader.hw_restored``): an answer must never
    show a high watermark lower than an earlier leader showed.
    """
    tablet_log = leader.log
    deadline = time.monotonic() + wait_ms / 1000
    if not leader.hw_restored and not await leader.wait_restored(wait_ms / 1000):
        raise HighWatermarkNotRestored(
            f"the leader of {leader.tablet.log}/{leader.tablet.index} is restoring its high "
            "watermark (just elected or restarted); retry"
        )
    while True:
        _check_range(tablet_log, offset)
        hw = tablet_log.high_watermark
        if offset < hw:
            result = tablet_log.read(offset, max_bytes, max_offset=hw)
            data = result.read_bytes() if not result.is_empty else b""
            next_offset = result.end_offset if data else offset
            return ReadOutcome(data, offset, next_offset, hw, tablet_log.start_offset)
        remaining = deadline - time.monotonic()
        if remaining <= 0 or leader.closed:
            return ReadOutcome(b"", offset, offset, hw, tablet_log.start_offset)
        await leader.wait_for_high_watermark(remaining)


def _check_range(tablet_log: TabletLog, offset: int) -> None:
    if offset < tablet_log.start_offset or offset > tablet_log.end_offset:
        raise OffsetOutOfRange(offset, tablet_log.start_offset, tablet_log.end_offset)


def records_json(outcome: ReadOutcome, max_records: int) -> dict[str, Any]:
    """The JSON consume answer (docs/openapi.yaml): records from the asked offset, ≤ max_records."""
    records: list[dict[str, Any]] = []
    next_offset = outcome.asked_offset
    for record in iter_records(outcome.data, verify=False):
        if record.offset < outcome.asked_offset:
            continue
        if len(records) >= max_records:
            break
        records.append(record_to_json(record))
        next_offset = record.offset + 1
    if len(records) < max_records and outcome.data:
        next_offset = max(next_offset, outcome.next_offset)
    return {
        "records": records,
        "next_offset": next_offset,
        "high_watermark": outcome.high_watermark,
        "start_offset": outcome.start_offset,
    }


def record_to_json(record: Record) -> dict[str, Any]:
    out: dict[str, Any] = {"offset": record.offset, "timestamp": record.timestamp}
    _put_bytes(out, "key", record.key)
    _put_bytes(out, "value", record.value)
    return out


def _put_bytes(out: dict[str, Any], name: str, data: bytes | None) -> None:
    if data is None:
        out[name] = None
        return
    try:
        out[name] = data.decode("utf-8")
    except UnicodeDecodeError:
        out[name] = None
        out[f"{name}_b64"] = base64.b64encode(data).decode()


_DIGEST_FIELDS = struct.Struct(">qq")
_LENGTH = struct.Struct(">i")


def replica_digest(tablet_log: TabletLog, leader_epoch: int) -> dict[str, Any]:
    """This replica's own view, with a SHA-256 over every record in [start, high watermark).

    The digest hashes, per record in offset order: offset and timestamp (8-byte big-endian
    each), then key and value each as a 4-byte big-endian length (-1 for none) and the bytes.
    Reads the whole committed range: meant for tests and audits, not the hot path.
    """
    digest = hashlib.sha256()
    start, hw = tablet_log.start_offset, tablet_log.high_watermark
    offset = start
    while offset < hw:
        data = tablet_log.read_bytes(offset, MAX_READ_BYTES, max_offset=hw)
        before = offset
        for record in iter_records(data) if data else ():
            if record.offset < offset or record.offset >= hw:
                continue
            digest.update(_DIGEST_FIELDS.pack(record.offset, record.timestamp))
            for part in (record.key, record.value):
                digest.update(_LENGTH.pack(-1 if part is None else len(part)))
                if part is not None:
                    digest.update(part)
            offset = record.offset + 1
        if offset == before:
            break
    return {
        "start_offset": start,
        "end_offset": tablet_log.end_offset,
        "high_watermark": hw,
        "leader_epoch": leader_epoch,
        "digest": digest.hexdigest(),
    }
