"""Per-tablet record queues of the producer, and turning a queue's head into a record batch.

This is where idempotence's numbering lives: each ``TabletQueue`` holds the producer id and the
next sequence number for its tablet. ``take_batch`` assigns a batch its ``base_sequence`` (the
sequence of its first record) exactly once, when the batch is built, and advances the counter by
the record count; the batch's bytes never change afterwards, so every retry resends the same
sequence. ``new_session`` starts over with a fresh producer id at sequence 0, for when the
leader's view of the old sequence is unknown (a batch failed for good).

Not thread-safe: a queue is touched only by ``Producer.send`` and the tablet's sender task, on
the producer's event loop.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import deque
from dataclasses import dataclass, field

from client.models import RecordMetadata
from storage.batch import HEADER_SIZE, NO_PRODUCER_ID, NO_SEQUENCE, build_batch

Data = bytes | bytearray | memoryview | str

SEQUENCE_MAX = 2**31 - 1  # base_sequence is a signed 32-bit field
_RECORD_OVERHEAD_BYTES = 16  # varints and attributes of one record, a generous estimate


def new_producer_id() -> int:
    """A random positive 62-bit producer id (collisions between producers are negligible)."""
    return secrets.randbits(62) or 1


def to_bytes(data: Data | None) -> bytes | None:
    """Keys and values travel as bytes; ``str`` is encoded as UTF-8."""
    if data is None:
        return None
    if isinstance(data, str):
        return data.encode()
    return bytes(data)


def record_size(key: bytes | None, value: bytes | None) -> int:
    """Bytes a record adds to a batch (an upper estimate)."""
    return (len(key) if key else 0) + (len(value) if value else 0) + _RECORD_OVERHEAD_BYTES


@dataclass(slots=True)
class PendingRecord:
    """A record waiting in a queue or in flight; ``future`` settles with where it landed."""

    key: bytes | None
    value: bytes | None
    future: asyncio.Future[RecordMetadata]
    size: int
    enqueued_at: float


@dataclass(slots=True)
class Batch:
    """A built batch: ``payload`` is final (retries resend it byte for byte)."""

    tablet: int
    records: list[PendingRecord]
    payload: bytes
    size: int  # sum of the records' estimated sizes (what the buffer accounting added)
    first_enqueued_at: float


@dataclass(slots=True)
class TabletQueue:
    """Queue, sequence state and sender bookkeeping of one tablet."""

    tablet: int
    producer_id: int
    next_sequence: int = 0
    queue: deque[PendingRecord] = field(default_factory=deque)
    queued_bytes: int = 0
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    in_flight: Batch | None = None  # from the moment a batch leaves the queue until settled
    stale_leader: bool = False

    def is_full(self, max_batch_bytes: int, max_batch_records: int) -> bool:
        """True when the queued records fill a whole batch (no reason to linger)."""
        return (
            self.queued_bytes + HEADER_SIZE >= max_batch_bytes
            or len(self.queue) >= max_batch_records
        )

    def new_session(self) -> None:
        """Forget the sequence state: a fresh producer id numbering from 0."""
        self.producer_id = new_producer_id()
        self.next_sequence = 0

    def take_batch(
        self, max_batch_bytes: int, max_batch_records: int, *, idempotent: bool
    ) -> Batch:
        """Build a batch from the head of the queue (at least one record, which must exist).

        With ``idempotent`` the batch gets the next sequence numbers of this tablet's session.
        """
        assert self.queue, "take_batch needs a queued record"
        records: list[PendingRecord] = []
        size = HEADER_SIZE
        while self.queue and len(records) < max_batch_records:
            head = self.queue[0]
            if records and size + head.size > max_batch_bytes:
                break
            records.append(self.queue.popleft())
            size += head.size
        self.queued_bytes -= size - HEADER_SIZE
        producer_id, producer_epoch, base_sequence = NO_PRODUCER_ID, -1, NO_SEQUENCE
        if idempotent:
            if self.next_sequence + len(records) > SEQUENCE_MAX:
                self.new_session()
            producer_id, producer_epoch, base_sequence = self.producer_id, 0, self.next_sequence
            self.next_sequence += len(records)
        payload = build_batch(
            [(r.key, r.value) for r in records],
            create_time_ms=int(time.time() * 1000),
            producer_id=producer_id,
            producer_epoch=producer_epoch,
            base_sequence=base_sequence,
        )
        return Batch(self.tablet, records, payload, size - HEADER_SIZE, records[0].enqueued_at)
