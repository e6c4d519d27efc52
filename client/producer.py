"""Batching, idempotent producer with several batches in flight per tablet.

``send`` appends a record to its tablet's open batch and returns a :class:`Delivery` handle
(see ``client.accumulator``); one sender task per tablet turns batches into requests to the
tablet leader's binary produce endpoint. A batch is closed when the next record would take it
past ``max_batch_bytes`` (or ``max_batch_records``), when its first record has waited
``linger_ms``, or at once on ``flush()``. Up to ``max_in_flight_per_tablet`` batches of a tablet
are in flight at a time, so batches leave while the application keeps producing, and ``send``
yields to the event loop whenever it closes a full batch (and every few hundred records), so
the sender tasks run even when the caller never waits for anything.

Idempotence (on by default): the producer asks the cluster for a producer id and its token
(``POST /v1/producers``) before its first batch, sends the token with every batch (so nobody
else can write as this producer) and numbers each tablet's records from 0, so a retried batch
is recognised by the leader and answered with its original offsets instead of being appended
twice. How several batches in flight stay in
order and exactly once across failures is explained in ``client.sender``. Without idempotence a
write whose outcome is unknown (a timeout) is not retried, and ``max_in_flight_per_tablet``
defaults to 1 (above 1, a retried batch may land after batches sent later).

Confined to the event loop of its :class:`~client.AsyncClient`; not thread-safe (the sync
wrapper in ``client.sync`` marshals calls onto that loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from client.accumulator import (
    RECORD_OVERHEAD_BYTES,
    Data,
    Delivery,
    ProducerBatch,
    TabletQueue,
    to_bytes,
)
from client.errors import NotFound, PayloadTooLarge, ProducerClosed
from client.models import RecordMetadata
from client.sender import Acks, Sender
from wire.batch import HEADER_SIZE, MAX_BATCH_BYTES
from wire.limits import MAX_BATCHES
from wire.partitioning import tablet_for_key

if TYPE_CHECKING:
    from client.async_client import AsyncClient

__all__ = [
    "DEFAULT_MAX_BATCH_BYTES",
    "Acks",
    "Data",
    "Delivery",
    "Producer",
    "ProducerStats",
]

DEFAULT_MAX_BATCH_BYTES = 256 * 1024
DEFAULT_MAX_IN_FLIGHT = MAX_BATCHES  # what the leader remembers per producer
_YIELD_EVERY = 500  # sends between two yields to the event loop, at the latest


@dataclass(slots=True)
class ProducerStats:
    """Counters for benchmarks and monitoring; ``batch_latencies_s`` keeps the last 100 000
    (from a batch's first attempt to its acknowledgement)."""

    records_sent: int = 0
    batches_sent: int = 0
    bytes_sent: int = 0
    retries: int = 0
    failed_batches: int = 0
    duplicates: int = 0
    batch_latencies_s: deque[float] = field(default_factory=lambda: deque(maxlen=100_000))
    last_error: BaseException | None = None  # of the last batch that failed for good


class Producer:
    """Sends records of one log; see the module docstring. Not thread-safe (one event loop)."""

    def __init__(
        self,
        client: AsyncClient,
        log: str,
        *,
        acks: Acks = "all",
        linger_ms: float = 5,
        max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
        max_batch_records: int | None = None,
        max_in_flight_per_tablet: int | None = None,
        idempotent: bool = True,
        delivery_timeout_s: float = 120.0,
        request_timeout_s: float = 30.0,
        retry_backoff_ms: float = 100,
        retry_backoff_max_ms: float = 1000,
        max_buffer_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        if acks not in ("all", "1", "0"):
            raise ValueError("acks must be 'all', '1' or '0'")
        if not HEADER_SIZE < max_batch_bytes <= MAX_BATCH_BYTES:
            raise ValueError(f"max_batch_bytes must be in ({HEADER_SIZE}, {MAX_BATCH_BYTES}]")
        if max_batch_records is not None and max_batch_records < 1:
            raise ValueError("max_batch_records must be positive")
        if max_in_flight_per_tablet is None:
            max_in_flight_per_tablet = DEFAULT_MAX_IN_FLIGHT if idempotent else 1
        most = MAX_BATCHES if idempotent else 1000
        if not 1 <= max_in_flight_per_tablet <= most:
            raise ValueError(f"max_in_flight_per_tablet must be in [1, {most}]")
        self._client = client
        self._log = log
        self._batch_room = max_batch_bytes - HEADER_SIZE
        self._max_batch_records = max_batch_records or 1_000_000
        self._max_in_flight = max_in_flight_per_tablet
        self._delivery_timeout_s = delivery_timeout_s
        self._max_buffer_bytes = max_buffer_bytes
        self._tablets: dict[int, TabletQueue] = {}
        self._round_robin = random.randrange(1 << 16)
        self._buffered_bytes = 0
        self._space = asyncio.Event()
        self._tablet_count: int | None = None
        self._unyielded = 0
        self._closed = False
        self.stats = ProducerStats()
        self._sender = Sender(
            client,
            log,
            self.stats,
            self._release,
            acks=acks,
            linger_s=max(linger_ms, 0) / 1000,
            batch_room=self._batch_room,
            max_batch_records=self._max_batch_records,
            max_in_flight=max_in_flight_per_tablet,
            idempotent=idempotent,
            delivery_timeout_s=delivery_timeout_s,
            request_timeout_s=request_timeout_s,
            backoff_s=retry_backoff_ms / 1000,
            backoff_max_s=retry_backoff_max_ms / 1000,
        )

    @property
    def log(self) -> str:
        return self._log

    @property
    def producer_id(self) -> int:
        """The producer id the cluster issued to the session (-1 without idempotence, or
        before the first batch was numbered)."""
        return self._sender.producer_id

    @property
    def max_in_flight_per_tablet(self) -> int:
        return self._max_in_flight

    async def __aenter__(self) -> Producer:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def send(
        self, value: Data | None, key: Data | None = None, tablet: int | None = None
    ) -> Delivery:
        """Queue one record; returns a :class:`Delivery`, awaitable for ``(tablet, offset)``.

        Waits while the producer buffers more than ``max_buffer_bytes`` (backpressure), and
        yields to the event loop now and then so batches leave. Routing: ``tablet`` if given,
        else ``tablet_for_key(key)``, else round robin. Raises ProducerClosed after ``close()``,
        NotFound for an unknown log or tablet, and PayloadTooLarge for a record that cannot fit
        in any batch. The delivery fails with the batch's error (DeliveryTimeout after retrying,
        or a non-retriable ClientError).
        """
        if self._closed:
            raise ProducerClosed(f"the producer of log {self._log!r} is closed")
        key_bytes = key if key is None or type(key) is bytes else to_bytes(key)
        value_bytes = value if value is None or type(value) is bytes else to_bytes(value)
        count = self._tablet_count
        if not count:
            index = await self._route(key_bytes, tablet)
        elif tablet is not None and 0 <= tablet < count:
            index = tablet
        elif tablet is None and key_bytes is not None:
            index = tablet_for_key(key_bytes, count)
        elif tablet is None:
            self._round_robin += 1
            index = self._round_robin % count
        else:
            index = await self._route(key_bytes, tablet)  # raises NotFound
        size = (
            RECORD_OVERHEAD_BYTES
            + (len(key_bytes) if key_bytes is not None else 0)
            + (len(value_bytes) if value_bytes is not None else 0)
        )
        buffered = self._buffered_bytes + size
        if buffered > self._max_buffer_bytes:
            if size + HEADER_SIZE > MAX_BATCH_BYTES:
                raise PayloadTooLarge(f"a record of {size} bytes exceeds the batch limit")
            if self._buffered_bytes > 0:
                await self._wait_for_space(size)
            buffered = self._buffered_bytes + size
        state = self._tablets.get(index)
        batch = state.open if state is not None else None
        full = False
        if (
            batch is None
            or batch.size + size > self._batch_room
            or len(batch.records) >= self._max_batch_records
        ):
            if size + HEADER_SIZE > MAX_BATCH_BYTES:
                raise PayloadTooLarge(f"a record of {size} bytes exceeds the batch limit")
            full = batch is not None
            state = self._state(index)  # (re)starts the tablet's sender if need be
            batch = state.open_batch(time.monotonic(), self._delivery_timeout_s)
        records = batch.records
        records.append((key_bytes, value_bytes))
        batch.size += size
        self._buffered_bytes = buffered
        delivery = Delivery(batch, len(records) - 1)
        unyielded = self._unyielded + 1
        if full or unyielded >= _YIELD_EVERY:
            self._unyielded = 0
            await asyncio.sleep(0)  # let the sender take the full batch
        else:
            self._unyielded = unyielded
        return delivery

    async def send_and_wait(
        self, value: Data | None, key: Data | None = None, tablet: int | None = None
    ) -> RecordMetadata:
        """``send`` then wait for the record's acknowledgement (no batching benefit)."""
        delivery = await self.send(value, key=key, tablet=tablet)
        await self.flush()
        return await delivery

    async def flush(self) -> None:
        """Send everything queued now (skip the linger) and wait until each record settled.

        Does not raise for failed records; their deliveries hold the errors.
        """
        pending = {
            b.future
            for state in self._tablets.values()
            for b in state.unsettled()
            if not b.future.done()
        }
        if not pending:
            return
        self._sender.flushing += 1
        try:
            for tablet, state in self._tablets.items():
                self._state(tablet)  # (re)starts the tablet's sender if need be
                state.wakeup.set()
            # asyncio.wait, not gather: cancelling a flush must not cancel the batches
            await asyncio.wait(pending)
        finally:
            self._sender.flushing -= 1

    async def close(self) -> None:
        """Flush, then stop the sender tasks; ``send`` raises ProducerClosed afterwards."""
        if self._closed and not self._tablets:
            return
        await self.flush()
        self._closed = self._sender.closed = True
        tasks = []
        for state in self._tablets.values():
            state.wakeup.set()
            if state.task is not None:
                tasks.append(state.task)
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tablets.clear()
        self._space.set()

    # -----------------------------------------------------------------------------------------
    # routing and queues

    async def _route(self, key: bytes | None, tablet: int | None) -> int:
        count = self._tablet_count
        if count is None:  # a log's tablet count never changes: look it up once
            count = (await self._client.metadata.log(self._log)).tablet_count
            self._tablet_count = count
        if count == 0:
            raise NotFound(f"log {self._log!r} has no tablets")
        if tablet is not None:
            if not 0 <= tablet < count:
                raise NotFound(f"log {self._log!r} has no tablet {tablet} (it has {count})")
            return tablet
        if key is not None:
            return tablet_for_key(key, count)
        self._round_robin += 1
        return self._round_robin % count

    async def _wait_for_space(self, size: int) -> None:
        while self._buffered_bytes > 0 and self._buffered_bytes + size > self._max_buffer_bytes:
            self._space.clear()
            await self._space.wait()
        if self._closed:
            raise ProducerClosed(f"the producer of log {self._log!r} is closed")

    def _state(self, tablet: int) -> TabletQueue:
        state = self._tablets.get(tablet)
        if state is None:
            state = TabletQueue(tablet)
            self._tablets[tablet] = state
        if state.task is None or state.task.done():
            state.task = asyncio.get_running_loop().create_task(
                self._sender.run(state), name=f"tabletlog-producer-{self._log}-{tablet}"
            )
        return state

    def _release(self, batch: ProducerBatch) -> None:
        """A batch settled: its records leave the buffer."""
        self._buffered_bytes -= batch.size
        self._space.set()
