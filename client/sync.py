"""Blocking client: ``Client``, ``SyncProducer`` and ``SyncConsumer`` for code without asyncio.

A ``Client`` starts a private event loop on a daemon thread and runs an
:class:`~client.async_client.AsyncClient` there; every blocking method submits a coroutine to that
loop and waits for its result. All asyncio state stays on the loop thread, so the blocking objects
are thread-safe: any thread may call any method, concurrently. Calling them from inside the loop
thread itself (e.g. from a done-callback) would deadlock and raises RuntimeError instead.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from client.accumulator import Delivery
from client.async_client import AsyncClient, TabletKey
from client.consumer import Consumer, Reset, Start
from client.models import ClusterInfo, LogDescription, Record, RecordMetadata, Status
from client.producer import Acks, Data, Producer, ProducerStats
from client.transport import Transport

T = TypeVar("T")


class _LoopThread:
    """An event loop running forever on a daemon thread. Thread-safe."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="tabletlog-client", daemon=True
        )
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float | None = None) -> T:
        """Run ``coro`` on the loop and block until it finishes; its exception propagates."""
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("blocking tabletlog calls cannot run on the client's loop thread")
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout_s)
        except BaseException:
            future.cancel()  # e.g. KeyboardInterrupt in the caller: stop the coroutine too
            raise

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class Client:
    """Blocking twin of :class:`~client.async_client.AsyncClient`. Thread-safe."""

    def __init__(
        self,
        bootstrap: Sequence[str] | str,
        *,
        timeout_s: float = 10.0,
        transport: Transport | None = None,
    ) -> None:
        self._thread = _LoopThread()
        self._async = AsyncClient(bootstrap, timeout_s=timeout_s, transport=transport)
        self._closed = False

    @property
    def async_client(self) -> AsyncClient:
        """The underlying client; use it only from coroutines run through :meth:`run`."""
        return self._async

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float | None = None) -> T:
        """Run a coroutine on the client's loop thread and wait for it."""
        return self._thread.run(coro, timeout_s)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close connections and stop the loop thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self.run(self._async.close())
        finally:
            self._thread.stop()

    def cluster(self) -> ClusterInfo:
        return self.run(self._async.cluster())

    def create_log(self, name: str, **settings: Any) -> LogDescription:
        return self.run(self._async.create_log(name, **settings))

    def list_logs(self) -> list[str]:
        return self.run(self._async.list_logs())

    def describe_log(self, name: str) -> LogDescription:
        return self.run(self._async.describe_log(name))

    def delete_log(self, name: str) -> None:
        self.run(self._async.delete_log(name))

    def status(self) -> Status:
        return self.run(self._async.status())

    def offset_for_timestamp(self, log: str, tablet: int, timestamp_ms: int) -> int:
        return self.run(self._async.offset_for_timestamp(log, tablet, timestamp_ms))

    def commit(self, group: str, offsets: Mapping[TabletKey, int]) -> None:
        self.run(self._async.commit(group, offsets))

    def committed(self, group: str, log: str) -> dict[TabletKey, int]:
        return self.run(self._async.committed(group, log))

    def producer(self, log: str, *, acks: Acks = "all", **options: Any) -> SyncProducer:
        """A blocking producer; options as for :class:`~client.producer.Producer`."""

        async def make() -> Producer:  # built on the loop thread, where it will live
            return self._async.producer(log, acks=acks, **options)

        return SyncProducer(self, self.run(make()))

    def consume(
        self,
        log: str,
        tablet: int,
        start: Start = "earliest",
        *,
        reset: Reset = None,
        **options: Any,
    ) -> SyncConsumer:
        """A blocking iterator of records; options as for :class:`~client.consumer.Consumer`."""
        return SyncConsumer(self, self._async.consume(log, tablet, start, reset=reset, **options))


class SyncProducer:
    """Blocking facade of a :class:`~client.producer.Producer`. Thread-safe."""

    def __init__(self, client: Client, producer: Producer) -> None:
        self._client = client
        self._producer = producer

    @property
    def stats(self) -> ProducerStats:
        """Live counters (read-only use from other threads; values may be mid-update)."""
        return self._producer.stats

    @property
    def producer_id(self) -> int:
        return self._producer.producer_id

    def __enter__(self) -> SyncProducer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def send(
        self, value: Data | None, key: Data | None = None, tablet: int | None = None
    ) -> concurrent.futures.Future[RecordMetadata]:
        """Queue a record (blocks only for backpressure); the future resolves on delivery."""
        result: concurrent.futures.Future[RecordMetadata] = concurrent.futures.Future()

        async def enqueue() -> None:
            delivery = await self._producer.send(value, key=key, tablet=tablet)
            delivery.add_done_callback(lambda done: _copy_outcome(done, result))

        self._client.run(enqueue())
        return result

    def send_and_wait(
        self, value: Data | None, key: Data | None = None, tablet: int | None = None
    ) -> RecordMetadata:
        return self._client.run(self._producer.send_and_wait(value, key=key, tablet=tablet))

    def flush(self) -> None:
        self._client.run(self._producer.flush())

    def close(self) -> None:
        self._client.run(self._producer.close())


class SyncConsumer:
    """Blocking iterator over a :class:`~client.consumer.Consumer`. Thread-safe per call, but
    records from one consumer should be taken by one thread to keep their order meaningful."""

    def __init__(self, client: Client, consumer: Consumer) -> None:
        self._client = client
        self._consumer = consumer
        self._buffer: list[Record] = []  # the last poll's records; __next__ yields from _next
        self._next = 0
        self._lock = threading.Lock()

    @property
    def position(self) -> int | None:
        return self._consumer.position

    @property
    def high_watermark(self) -> int | None:
        return self._consumer.high_watermark

    def seek(self, start: Start) -> None:
        with self._lock:
            self._buffer, self._next = [], 0
            self._client.run(self._consumer.seek(start))

    def poll(self) -> list[Record]:
        """One fetch (long-polls up to ``wait_ms``); see :meth:`Consumer.poll`."""
        return self._client.run(self._consumer.poll())

    def __iter__(self) -> Iterator[Record]:
        return self

    def __next__(self) -> Record:
        with self._lock:
            index = self._next
            while index >= len(self._buffer):
                if self._consumer.at_end and self._stop_at_end:
                    raise StopIteration
                self._buffer, index = self._client.run(self._consumer.poll()), 0
            self._next = index + 1
            return self._buffer[index]

    @property
    def _stop_at_end(self) -> bool:
        return self._consumer.stop_at_end


def _copy_outcome(source: Delivery, target: concurrent.futures.Future[RecordMetadata]) -> None:
    if source.cancelled():
        target.cancel()
        return
    exc = source.exception()
    if exc is not None:
        target.set_exception(exc)
    else:
        target.set_result(source.result())
