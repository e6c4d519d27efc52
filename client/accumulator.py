"""Per-tablet batches of the producer, the handle ``send`` returns, and idempotence's numbering.

``send`` appends a record to its tablet's *open* batch (a list of ``(key, value)`` pairs) and
gets back a :class:`Delivery`: the batch and the record's index in it, nothing else. A batch
holds one asyncio future for all its records, settled with the batch's base offset (or its
error); a record's ``(tablet, offset)`` is computed only when someone asks. So the per-record
cost is one tuple and one small object, and completing a batch of thousands of records is one
``set_result``.

Numbering: each ``TabletQueue`` holds a producer identity issued by the cluster (id, epoch and
the token that proves it, ``POST /v1/producers``; none while a new one is being fetched) and the
next sequence number of its tablet. A batch is numbered and encoded (``wire.batch.build_batch``)
exactly once, when it is first sent, and keeps the token of its identity; its bytes never change
afterwards, so every retry resends the same sequence and the leader answers a duplicate with the
original offsets. The one exception is a batch of an abandoned session (see ``client.producer``)
that the leader proved it never wrote: ``restamp`` moves it to the current session (new producer
id and sequence, checksum recomputed).

Not thread-safe: touched only by ``Producer.send`` and the tablet's sender, on one event loop.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from client.models import ProducerIdentity, RecordMetadata
from wire.batch import (
    BODY,
    BODY_POS,
    CRC_POS,
    HEADER_SIZE,
    NO_PRODUCER_ID,
    NO_SEQUENCE,
    build_batch,
    crc32c,
    parse_header,
)

Data = bytes | bytearray | memoryview | str

SEQUENCE_MAX = 2**31 - 1  # base_sequence is a signed 32-bit field
RECORD_OVERHEAD_BYTES = 16  # varints and attributes of one record, a generous estimate


def to_bytes(data: Data | None) -> bytes | None:
    """Keys and values travel as bytes; ``str`` is encoded as UTF-8."""
    if data is None or type(data) is bytes:
        return data
    if isinstance(data, str):
        return data.encode()
    return bytes(data)


def record_size(key: bytes | None, value: bytes | None) -> int:
    """Bytes a record adds to a batch (an upper estimate)."""
    return (len(key) if key else 0) + (len(value) if value else 0) + RECORD_OVERHEAD_BYTES


class ProducerBatch:
    """Records bound for one tablet, from the first ``send`` until the batch is settled.

    ``future`` resolves to the base offset (-1 with acks 0) or the batch's error. ``payload`` is
    None until the batch is first sent; ``number`` orders the batches of a tablet (it follows
    the sequence numbers).
    """

    __slots__ = (
        "attempts",
        "count",
        "created_at",
        "deadline",
        "future",
        "needs_restamp",
        "number",
        "payload",
        "producer_id",
        "producer_token",
        "records",
        "retry_at",
        "sent_alone",
        "sent_at",
        "size",
        "tablet",
    )

    def __init__(
        self, tablet: int, number: int, future: asyncio.Future[int], now: float, deadline: float
    ) -> None:
        self.tablet = tablet
        self.number = number
        self.future = future
        self.records: list[tuple[bytes | None, bytes | None]] = []
        self.size = 0  # estimated record bytes (what the producer's buffer accounting added)
        self.count = 0  # records, kept once ``records`` is dropped after encoding
        self.created_at = now
        self.deadline = deadline
        self.payload: bytes | None = None
        self.producer_id = NO_PRODUCER_ID
        self.producer_token: str | None = None  # of the identity it was numbered in
        self.needs_restamp = False  # proven unwritten: renumber into the current session
        self.attempts = 0
        self.sent_at = 0.0  # the first attempt's start
        self.retry_at = 0.0
        self.sent_alone = False  # no earlier batch of the tablet was unsettled when it was sent

    def __repr__(self) -> str:
        return (
            f"ProducerBatch(tablet={self.tablet}, number={self.number}, "
            f"records={self.count or len(self.records)}, attempts={self.attempts})"
        )


class Delivery:
    """Where one sent record lands: awaitable, and queryable like a future.

    ``await delivery`` (or ``result()`` once ``done()``) gives ``RecordMetadata(tablet, offset)``
    or raises the batch's error. One per record and deliberately small: the batch's future is
    shared, and awaiting shields it (cancelling one waiter cancels nothing else). For
    ``asyncio.wait`` wrap it with ``asyncio.ensure_future``.
    """

    __slots__ = ("_batch", "_index")

    def __init__(self, batch: ProducerBatch, index: int) -> None:
        self._batch = batch
        self._index = index

    @property
    def tablet(self) -> int:
        return self._batch.tablet

    def done(self) -> bool:
        return self._batch.future.done()

    def cancelled(self) -> bool:
        return self._batch.future.cancelled()

    def result(self) -> RecordMetadata:
        """``(tablet, offset)``; raises the error, or InvalidStateError while pending."""
        base = self._batch.future.result()
        return RecordMetadata(self._batch.tablet, base + self._index if base >= 0 else -1)

    def exception(self) -> BaseException | None:
        return self._batch.future.exception()

    def add_done_callback(self, callback: Callable[[Delivery], object]) -> None:
        """Call ``callback(self)`` once the record is settled (from the event loop)."""
        self._batch.future.add_done_callback(lambda _future: callback(self))

    def __await__(self) -> Generator[Any, None, RecordMetadata]:
        future = self._batch.future
        if not future.done():
            yield from asyncio.shield(future).__await__()
        return self.result()

    def __repr__(self) -> str:
        state = (
            "pending"
            if not self.done()
            else ("failed" if self.cancelled() or self.exception() else repr(self.result()))
        )
        return f"<Delivery tablet={self._batch.tablet} {state}>"


@dataclass(slots=True)
class TabletQueue:
    """Batches, sequence state and sender bookkeeping of one tablet.

    ``batches`` are not sent yet, oldest first; ``open`` (the last of them, if set) still takes
    records. ``in_flight`` are being sent, in sending order; ``retry`` failed an attempt and wait
    to be resent, in ``number`` order. ``session_acked``: a batch of the current producer id has
    been acknowledged (until then the leader may not know the id, so batches go one at a time).
    ``recovering``: an attempt failed; batches go one at a time until one sent alone (with
    nothing in flight) is acknowledged. ``producer_id`` is -1 until the tablet's sender adopted an
    identity (and again after ``new_session``); ``had_session``: one was adopted before.
    """

    tablet: int
    producer_id: int = NO_PRODUCER_ID
    producer_epoch: int = 0
    producer_token: str | None = None
    had_session: bool = False
    next_sequence: int = 0
    batches: deque[ProducerBatch] = field(default_factory=deque)
    open: ProducerBatch | None = None
    in_flight: list[ProducerBatch] = field(default_factory=list)
    retry: list[ProducerBatch] = field(default_factory=list)
    session_acked: bool = False
    recovering: bool = False
    next_number: int = 0
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    stale_leader: bool = False

    def open_batch(self, now: float, delivery_timeout_s: float) -> ProducerBatch:
        """Seal the open batch (if any) and open a new one, which ``send`` fills."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        batch = ProducerBatch(self.tablet, self.next_number, future, now, now + delivery_timeout_s)
        self.next_number += 1
        self.batches.append(batch)
        self.open = batch
        self.wakeup.set()
        return batch

    def unsettled(self) -> list[ProducerBatch]:
        """Every batch not settled yet: queued, in flight or waiting for a retry."""
        return [*self.batches, *self.in_flight, *self.retry]

    def idle(self) -> bool:
        return not (self.batches or self.in_flight or self.retry)

    def add_retry(self, batch: ProducerBatch) -> None:
        self.retry.append(batch)
        self.retry.sort(key=lambda b: b.number)

    def new_session(self) -> None:
        """Forget the identity and sequence state: the sender fetches a fresh producer id
        (numbering from 0) before it numbers anything again."""
        self.producer_id = NO_PRODUCER_ID
        self.producer_token = None
        self.next_sequence = 0
        self.session_acked = False

    def adopt(self, identity: ProducerIdentity) -> None:
        """Start numbering from 0 under ``identity`` (issued by the cluster)."""
        self.producer_id = identity.producer_id
        self.producer_epoch = identity.producer_epoch
        self.producer_token = identity.producer_token
        self.had_session = True
        self.next_sequence = 0
        self.session_acked = False

    def needs_identity(self) -> bool:
        """No identity, and a batch waits to be numbered (queued, or failed and proven
        unwritten): the sender must fetch one first."""
        return self.producer_id == NO_PRODUCER_ID and (
            bool(self.batches) or any(b.needs_restamp for b in self.retry)
        )

    def sequence_room(self, count: int) -> bool:
        """Whether ``count`` more records fit in this session's sequence numbers."""
        return self.next_sequence + count <= SEQUENCE_MAX

    def encode(self, batch: ProducerBatch, *, idempotent: bool) -> None:
        """Number (with ``idempotent``) and encode ``batch``; its records are dropped."""
        count = len(batch.records)
        producer_id, producer_epoch, base_sequence = NO_PRODUCER_ID, -1, NO_SEQUENCE
        if idempotent:
            producer_id, producer_epoch, base_sequence = self._take_sequences(count)
        batch.payload = build_batch(
            batch.records,
            create_time_ms=int(time.time() * 1000),
            producer_id=producer_id,
            producer_epoch=producer_epoch,
            base_sequence=base_sequence,
        )
        batch.producer_id = producer_id
        batch.producer_token = self.producer_token if idempotent else None
        batch.count = count
        batch.records = []

    def restamp(self, batch: ProducerBatch) -> None:
        """Move an encoded batch to the current session (new producer id and sequence)."""
        assert batch.payload is not None
        h = parse_header(batch.payload)
        producer_id, epoch, sequence = self._take_sequences(h.record_count)
        buf = bytearray(batch.payload)
        BODY.pack_into(
            buf,
            BODY_POS,
            h.attributes,
            h.last_offset_delta,
            h.first_timestamp,
            h.max_timestamp,
            producer_id,
            epoch,
            sequence,
            h.record_count,
        )
        struct.pack_into(">I", buf, CRC_POS, crc32c(memoryview(buf)[BODY_POS:]))
        batch.payload = bytes(buf)
        batch.producer_id = producer_id
        batch.producer_token = self.producer_token
        batch.needs_restamp = False

    def _take_sequences(self, count: int) -> tuple[int, int, int]:
        """(producer id, epoch, base sequence) for ``count`` records of the current session,
        which must have an identity and room for them (the sender sees to both)."""
        if self.producer_id == NO_PRODUCER_ID or not self.sequence_room(count):
            raise RuntimeError("numbering without a producer identity or sequence room")
        base = self.next_sequence
        self.next_sequence += count
        return self.producer_id, self.producer_epoch, base


__all__ = [
    "HEADER_SIZE",
    "Data",
    "Delivery",
    "ProducerBatch",
    "TabletQueue",
    "record_size",
    "to_bytes",
]
