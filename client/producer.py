"""Batching, idempotent producer.

Records are queued per tablet; one sender task per tablet turns the queue into record batches
(``storage.batch.build_batch``) and POSTs them to the tablet leader's binary produce endpoint.
A batch leaves when it holds ``max_batch_bytes`` (or ``max_batch_records``), when its oldest
record has waited ``linger_ms``, or at once on ``flush()``.

Idempotence (on by default): the producer picks a random positive 62-bit producer id; per tablet
it numbers records from 0 (``base_sequence`` of a batch is the sequence of its first record) and
each batch is built once, so a retry resends the same bytes with the same sequence and the leader
answers a duplicate with the original offsets instead of appending again. At most one batch per
tablet is in flight, which keeps ordering (and the leader's sequence check) simple. When a batch
fails for good the tablet's sequence state is unknown, so the tablet moves to a fresh producer id
starting again at sequence 0 (a new session; the leader treats it as a new producer).

Retries: errors with ``retriable`` are retried with capped exponential backoff until
``delivery_timeout_s`` after the batch's first record was sent; errors with ``refresh_metadata``
make the next attempt look the leader up again (a ``not_leader`` hint is used directly). Without
idempotence a write whose outcome is unknown (a timeout) is not retried, since that could append
it twice.

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
from typing import TYPE_CHECKING, Literal

from client.accumulator import (
    Batch,
    Data,
    PendingRecord,
    TabletQueue,
    new_producer_id,
    record_size,
    to_bytes,
)
from client.errors import (
    ClientError,
    DeliveryTimeout,
    NoLeader,
    NotFound,
    NotLeader,
    PayloadTooLarge,
    ProducerClosed,
)
from client.metadata import log_path
from client.models import RecordMetadata
from client.transport import BATCH_CONTENT_TYPE, NO_FORWARD_HEADER
from replication.partitioning import tablet_for_key
from storage.batch import HEADER_SIZE, MAX_BATCH_BYTES, NO_PRODUCER_ID

if TYPE_CHECKING:
    from client.async_client import AsyncClient

Acks = Literal["all", "1", "0"]
__all__ = ["Acks", "Data", "Producer", "ProducerStats", "new_producer_id"]


@dataclass(slots=True)
class ProducerStats:
    """Counters for benchmarks and monitoring; ``batch_latencies_s`` keeps the last 100 000."""

    records_sent: int = 0
    batches_sent: int = 0
    bytes_sent: int = 0
    retries: int = 0
    failed_batches: int = 0
    duplicates: int = 0
    batch_latencies_s: deque[float] = field(default_factory=lambda: deque(maxlen=100_000))


class Producer:
    """Sends records of one log; see the module docstring. Not thread-safe (one event loop)."""

    def __init__(
        self,
        client: AsyncClient,
        log: str,
        *,
        acks: Acks = "all",
        linger_ms: float = 5,
        max_batch_bytes: int = 1024 * 1024,
        max_batch_records: int | None = None,
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
        self._client = client
        self._log = log
        self._acks: Acks = acks
        self._linger_s = max(linger_ms, 0) / 1000
        self._max_batch_bytes = max_batch_bytes
        self._max_batch_records = max_batch_records or 1_000_000
        self._idempotent = idempotent
        self._delivery_timeout_s = delivery_timeout_s
        self._request_timeout_s = request_timeout_s
        self._backoff_s = retry_backoff_ms / 1000
        self._backoff_max_s = retry_backoff_max_ms / 1000
        self._max_buffer_bytes = max_buffer_bytes
        self._producer_id = new_producer_id() if idempotent else NO_PRODUCER_ID
        self._tablets: dict[int, TabletQueue] = {}
        self._round_robin = random.randrange(1 << 16)
        self._buffered_bytes = 0
        self._space = asyncio.Event()
        self._tablet_count: int | None = None
        self._flushing = 0
        self._closed = False
        self.stats = ProducerStats()

    @property
    def log(self) -> str:
        return self._log

    @property
    def producer_id(self) -> int:
        """The producer id the session started with (-1 without idempotence)."""
        return self._producer_id

    async def __aenter__(self) -> Producer:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def send(
        self, value: Data | None, key: Data | None = None, tablet: int | None = None
    ) -> asyncio.Future[RecordMetadata]:
        """Queue one record; returns a future of where it landed ``(tablet, offset)``.

        Waits only while the producer buffers more than ``max_buffer_bytes`` (backpressure).
        Routing: ``tablet`` if given, else ``tablet_for_key(key)``, else round robin. Raises
        ProducerClosed after ``close()``, NotFound for an unknown log or tablet, and
        PayloadTooLarge for a record that cannot fit in any batch. The future fails with the
        batch's error (DeliveryTimeout after retrying, or a non-retriable ClientError).
        """
        if self._closed:
            raise ProducerClosed(f"the producer of log {self._log!r} is closed")
        key_bytes, value_bytes = to_bytes(key), to_bytes(value)
        index = await self._route(key_bytes, tablet)
        size = record_size(key_bytes, value_bytes)
        if size + HEADER_SIZE > MAX_BATCH_BYTES:
            raise PayloadTooLarge(f"a record of {size} bytes exceeds the batch limit")
        while self._buffered_bytes > 0 and self._buffered_bytes + size > self._max_buffer_bytes:
            self._space.clear()
            await self._space.wait()
        if self._closed:
            raise ProducerClosed(f"the producer of log {self._log!r} is closed")
        future: asyncio.Future[RecordMetadata] = asyncio.get_running_loop().create_future()
        state = self._state(index)
        was_empty = not state.queue
        state.queue.append(PendingRecord(key_bytes, value_bytes, future, size, time.monotonic()))
        state.queued_bytes += size
        self._buffered_bytes += size
        if was_empty or self._batch_full(state):
            state.wakeup.set()
        return future

    async def send_and_wait(
        self, value: Data | None, key: Data | None = None, tablet: int | None = None
    ) -> RecordMetadata:
        """``send`` then wait for the record's acknowledgement (no batching benefit)."""
        future = await self.send(value, key=key, tablet=tablet)
        await self.flush()
        return await future

    async def flush(self) -> None:
        """Send everything queued now (skip the linger) and wait until each record settled.

        Does not raise for failed records; their futures hold the errors.
        """
        pending = self._pending_futures()
        if not pending:
            return
        self._flushing += 1
        try:
            for state in self._tablets.values():
                state.wakeup.set()
            # asyncio.wait, not gather: cancelling a flush must not cancel the records
            await asyncio.wait(pending)
        finally:
            self._flushing -= 1

    def _pending_futures(self) -> set[asyncio.Future[RecordMetadata]]:
        """Futures of every record queued or in flight (no per-record bookkeeping needed)."""
        pending: set[asyncio.Future[RecordMetadata]] = set()
        for state in self._tablets.values():
            pending.update(r.future for r in state.queue)
            if state.in_flight is not None:
                pending.update(r.future for r in state.in_flight.records)
        return {f for f in pending if not f.done()}

    async def close(self) -> None:
        """Flush, then stop the sender tasks; ``send`` raises ProducerClosed afterwards."""
        if self._closed and not self._tablets:
            return
        await self.flush()
        self._closed = True
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

    def _state(self, tablet: int) -> TabletQueue:
        state = self._tablets.get(tablet)
        if state is None:
            state = TabletQueue(tablet, self._producer_id)
            self._tablets[tablet] = state
        if state.task is None or state.task.done():
            state.task = asyncio.get_running_loop().create_task(
                self._sender(state), name=f"tabletlog-producer-{self._log}-{tablet}"
            )
        return state

    def _batch_full(self, state: TabletQueue) -> bool:
        return state.is_full(self._max_batch_bytes, self._max_batch_records)

    async def _sender(self, state: TabletQueue) -> None:
        """Root of a tablet's sender task: collect a batch, deliver it, repeat."""
        while True:
            batch = await self._collect(state)
            if batch is None:
                return
            state.in_flight = batch  # no await since _build took it off the queue: flush sees it
            try:
                await self._deliver(state, batch)
            finally:
                state.in_flight = None

    async def _collect(self, state: TabletQueue) -> Batch | None:
        """Wait for records and the linger, then build the next batch (None when closing)."""
        while not state.queue:
            if self._closed:
                return None
            state.wakeup.clear()
            await state.wakeup.wait()
        deadline = state.queue[0].enqueued_at + self._linger_s
        while not (self._flushing or self._closed or self._batch_full(state)):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            state.wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(state.wakeup.wait(), remaining)
        return state.take_batch(self._max_batch_bytes, self._max_batch_records,
                                idempotent=self._idempotent)

    # -----------------------------------------------------------------------------------------
    # delivery

    async def _deliver(self, state: TabletQueue, batch: Batch) -> None:
        """Send ``batch`` until it is acknowledged, fails for good or runs out of time."""
        deadline = batch.first_enqueued_at + self._delivery_timeout_s
        started = time.monotonic()
        attempt = 0
        try:
            while True:
                try:
                    base_offset = await self._send_once(state, batch, deadline)
                except ClientError as exc:
                    delay = self._retry_delay(state, exc, attempt)
                    if delay is None:
                        self._fail(state, batch, exc)
                        return
                    if time.monotonic() + delay >= deadline:
                        self._fail(state, batch, DeliveryTimeout(
                            f"gave up on {len(batch.records)} records for tablet {batch.tablet} "
                            f"of log {self._log!r} after {attempt + 1} attempts: {exc.message}",
                            exc,
                        ))
                        return
                    attempt += 1
                    self.stats.retries += 1
                    await asyncio.sleep(delay)
                    continue
                self._succeed(batch, base_offset, time.monotonic() - started)
                return
        finally:
            self._buffered_bytes -= batch.size
            self._space.set()

    def _retry_delay(self, state: TabletQueue, exc: ClientError, attempt: int) -> float | None:
        """Seconds to wait before retrying after ``exc``, or None when it must not be retried."""
        if not exc.retriable:
            return None
        unsent = not getattr(exc, "sent", True)
        if exc.outcome_unknown and not unsent and not self._idempotent:
            return None  # a retry could append the records twice
        metadata = self._client.metadata
        if isinstance(exc, NotLeader) and exc.leader is not None:
            metadata.note_leader(self._log, state.tablet, exc.leader, exc.leader_address)
            hinted = metadata.leader_address(self._log, state.tablet)
            if hinted is not None and hinted != exc.address and attempt == 0:
                return 0.0  # the node told us where to go; no need to wait
            state.stale_leader = hinted is None or hinted == exc.address
        elif exc.refresh_metadata:
            state.stale_leader = True
        backoff = min(self._backoff_s * 2.0**attempt, self._backoff_max_s)
        return backoff * random.uniform(0.8, 1.2)

    async def _send_once(self, state: TabletQueue, batch: Batch, deadline: float) -> int:
        """POST the batch to the tablet leader; returns its base offset (-1 with acks 0).

        The leader may hold a request up to its ``timeout_ms`` (waiting for replicas or for
        leadership to settle), so that is capped by what is left of the delivery timeout.
        """
        timeout_s = min(self._request_timeout_s, max(deadline - time.monotonic(), 0.1))
        metadata = self._client.metadata
        address = None if state.stale_leader else metadata.leader_address(self._log, state.tablet)
        if address is None:
            await metadata.log(self._log, refresh=True)
            state.stale_leader = False
            address = metadata.leader_address(self._log, state.tablet)
            if address is None:
                raise NoLeader(f"no leader known for tablet {state.tablet} of log {self._log!r}")
        response = await self._client.transport.request(
            "POST",
            address,
            log_path(self._log, "tablets", state.tablet, "batches"),
            params={"acks": self._acks, "timeout_ms": int(timeout_s * 1000)},
            data=batch.payload,
            headers={"Content-Type": BATCH_CONTENT_TYPE, NO_FORWARD_HEADER: "1"},
            timeout_s=timeout_s + 2,  # the leader answers by timeout_ms; 2 s for the network
        )
        answer = response.json_object()
        if answer.get("duplicate") is True:
            self.stats.duplicates += 1
        base = answer.get("base_offset")
        if self._acks == "0" or not isinstance(base, int) or isinstance(base, bool):
            return -1
        return base

    def _succeed(self, batch: Batch, base_offset: int, latency_s: float) -> None:
        self.stats.batches_sent += 1
        self.stats.records_sent += len(batch.records)
        self.stats.bytes_sent += len(batch.payload)
        self.stats.batch_latencies_s.append(latency_s)
        for i, record in enumerate(batch.records):
            if not record.future.done():
                offset = base_offset + i if base_offset >= 0 else -1
                record.future.set_result(RecordMetadata(batch.tablet, offset))

    def _fail(self, state: TabletQueue, batch: Batch, exc: ClientError) -> None:
        self.stats.failed_batches += 1
        if self._idempotent:
            # the leader may or may not hold this sequence range now: start a new session
            state.new_session()
        for record in batch.records:
            if not record.future.done():
                record.future.set_exception(exc)
