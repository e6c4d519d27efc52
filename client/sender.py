"""Delivery of a producer's batches: one sender task per tablet, several batches in flight.

Idempotence (on by default): the producer gets a producer id from the cluster
(``POST /v1/producers``, once per producer; each later session of a tablet gets its own), with
a token sent along with every batch numbered under it (``X-Tabletlog-Producer-Token``: nobody
else can write with the id). Per tablet it numbers records from 0 (a batch's
``base_sequence`` is the sequence of its first record), numbering and encoding a batch once,
when it is first sent, so a retry resends the same bytes and the leader answers a duplicate
with the original offsets instead of appending again. The leader remembers a producer's last
5 batches and rejects a sequence gap with ``out_of_order_sequence``; hence at most 5 batches
in flight, and this recovery scheme:

* Batches are sent in sequence order. While a tablet has no failed batch, up to
  ``max_in_flight_per_tablet`` are in flight; until a batch of the current producer id has been
  acknowledged, only one (a leader that does not know the id accepts any sequence, so a second
  batch overtaking the first would be written first).
* When an attempt fails with a retriable error, the batch joins the tablet's retry list (in
  sequence order) and the tablet recovers: nothing is sent until every in-flight batch of the
  tablet has finished; then the first failed batch is resent alone (after its backoff); once it
  is acknowledged, the other failed batches and then the queue follow, pipelined again.
* The window: a batch is sent only if fewer than ``max_in_flight_per_tablet`` (at most 5)
  batches separate it from the oldest unsettled batch of the tablet, counting acknowledged ones.
  So at most 4 batches are written after any batch still unsettled, and when it is resent the
  leader still remembers it if it wrote it: it answers a duplicate with the original offsets.
* ``out_of_order_sequence`` for a batch sent while an earlier batch was unsettled is the
  consequence of that earlier failure (or of one request overtaking another) and is retried
  like the rest. For a batch sent alone it means the leader's state differs from ours: the batch
  fails, unless its producer id is no longer the tablet's current one (below), which proves the
  leader never wrote it: it is then renumbered into the current session and resent.
* A batch that fails for good (a non-retriable error, or ``delivery_timeout_s`` after its first
  record was sent) fails its records; the tablet moves to a fresh producer id numbering from 0
  (a new session). Later batches already numbered in the old session are resent unchanged, one
  at a time, before anything new is numbered: each is either acknowledged (it was written, or
  follows one that was) or proven unwritten by ``out_of_order_sequence`` and renumbered into the
  new session, so none is written twice and the order is kept.

* ``unknown_producer`` (the cluster does not accept the token: its secret changed) proves the
  request wrote nothing: the tablet starts a new session and the batch is renumbered into it,
  if that was its first attempt (an earlier attempt may have been written under the old
  secret; such a batch fails instead).

Without idempotence nothing is numbered, and a write whose outcome is unknown (a timeout) is not
retried, since that could append it twice. ``max_in_flight_per_tablet`` then defaults to 1: with
more, a batch retried after a failure lands after batches sent later (set it above 1 only if
ordering within a tablet does not matter).

Retries: errors with ``retriable`` are retried with capped exponential backoff until
``delivery_timeout_s``; errors with ``refresh_metadata`` make the next attempt look the leader up
again (a ``not_leader`` hint is used directly).

Not thread-safe: runs on the producer's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from client.accumulator import RECORD_OVERHEAD_BYTES, SEQUENCE_MAX, ProducerBatch, TabletQueue
from client.errors import (
    ClientError,
    DeliveryTimeout,
    NoLeader,
    NotLeader,
    OutOfOrderSequence,
    ProducerClosed,
    UnknownProducer,
)
from client.metadata import log_path
from client.producer_identities import ProducerIdentities
from client.transport import BATCH_CONTENT_TYPE, NO_FORWARD_HEADER, PRODUCER_TOKEN_HEADER

if TYPE_CHECKING:
    from client.async_client import AsyncClient
    from client.producer import ProducerStats

Acks = Literal["all", "1", "0"]


class Sender:
    """Sends the batches of one producer's tablets (``run`` is a tablet's task).

    ``flushing`` (a count) and ``closed`` make open batches leave without their linger.
    ``release`` is called once per settled batch (the producer's buffer accounting).
    """

    def __init__(
        self,
        client: AsyncClient,
        log: str,
        stats: ProducerStats,
        release: Callable[[ProducerBatch], None],
        *,
        acks: Acks,
        linger_s: float,
        batch_room: int,
        max_batch_records: int,
        max_in_flight: int,
        idempotent: bool,
        delivery_timeout_s: float,
        request_timeout_s: float,
        backoff_s: float,
        backoff_max_s: float,
    ) -> None:
        self._client = client
        self._log = log
        self.stats = stats
        self._release = release
        self._acks: Acks = acks
        self._linger_s = linger_s
        self._batch_room = batch_room
        self._max_batch_records = max_batch_records
        self._max_in_flight = max_in_flight
        self._idempotent = idempotent
        self._delivery_timeout_s = delivery_timeout_s
        self._request_timeout_s = request_timeout_s
        self._backoff_s = backoff_s
        self._backoff_max_s = backoff_max_s
        self._attempts: set[asyncio.Task[None]] = set()
        self._identities = ProducerIdentities(client)
        self.flushing = 0
        self.closed = False

    async def run(self, state: TabletQueue) -> None:
        """Root of a tablet's sender task: start attempts while the rules above allow."""
        while True:
            if self._idempotent and state.needs_identity():
                await self._start_session(state)
                continue
            batch, wait_s = self._next_to_send(state)
            if batch is not None:
                self._dispatch(state, batch)
                continue
            if self.closed and state.idle():
                return
            state.wakeup.clear()
            if wait_s is None:
                await state.wakeup.wait()
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(state.wakeup.wait(), wait_s)

    @property
    def producer_id(self) -> int:
        """The id the cluster issued to this producer (-1 before it answered)."""
        return self._identities.producer_id

    async def _start_session(self, state: TabletQueue) -> None:
        """Adopt an identity for ``state``; on failure, back off or fail the waiting batch."""
        try:
            identity = await self._identities.get(fresh=state.had_session)
        except ClientError as exc:
            head = state.batches[0] if state.batches else None
            if head is None:
                head = next((b for b in state.retry if b.needs_restamp), None)
            now = time.monotonic()
            if head is not None and (not exc.retriable or now >= head.deadline):
                if head is state.open:
                    state.open = None
                if state.batches and head is state.batches[0]:
                    state.batches.popleft()
                else:
                    state.retry.remove(head)
                error: BaseException = exc
                if exc.retriable:
                    error = DeliveryTimeout(
                        f"no producer id for tablet {state.tablet} of log {self._log!r} "
                        f"within the delivery timeout: {exc.message}",
                        exc,
                    )
                self._fail(state, head, error)
                return
            wait_s = self._backoff_s * random.uniform(0.8, 1.2)
            if head is not None:
                wait_s = min(wait_s, max(head.deadline - now, 0.0))
            await asyncio.sleep(wait_s)
            return
        if state.producer_id == -1:  # nobody adopted one meanwhile
            state.adopt(identity)

    def _next_to_send(self, state: TabletQueue) -> tuple[ProducerBatch | None, float | None]:
        """The batch to send now, or None and how long to wait at most (None: until woken)."""
        now = time.monotonic()
        # a batch numbered in an abandoned session may need renumbering: until none is left
        # (failed or in flight), nothing new is numbered and batches go one at a time
        abandoned = self._idempotent and any(
            b.producer_id != state.producer_id for b in (*state.retry, *state.in_flight)
        )
        if state.recovering or abandoned:  # once nothing is in flight, batches go alone
            if state.in_flight:
                return None, None
            if not state.retry:
                state.recovering = False
        if state.recovering or abandoned or (self._idempotent and not state.session_acked):
            limit = 1
        else:
            limit = self._max_in_flight
        if len(state.in_flight) >= limit:
            return None, None
        if state.retry:  # failed batches go first, in order (in flight + retry <= limit)
            retry = state.retry[0]
            if retry.retry_at > now:
                return None, retry.retry_at - now
            if retry.needs_restamp and not state.sequence_room(retry.count):
                state.new_session()  # nothing is in flight (it is abandoned): start over
                return None, 0.0
            return state.retry.pop(0), None
        if not state.batches:
            return None, None
        head = state.batches[0]
        unsettled = [*state.in_flight, *state.retry]
        if unsettled and head.number >= min(b.number for b in unsettled) + limit:
            return None, None  # the window: every batch sent since the oldest unsettled one
        if head is state.open:
            full = (
                head.size + RECORD_OVERHEAD_BYTES > self._batch_room
                or len(head.records) >= self._max_batch_records
            )
            if not (full or self.flushing or self.closed):
                wait_s = head.created_at + self._linger_s - now
                if wait_s > 0:
                    return None, wait_s
        if (
            self._idempotent
            and state.in_flight
            and state.next_sequence + len(head.records) > SEQUENCE_MAX
        ):
            return None, None  # the next batch starts a new session: not while others fly
        if self._idempotent and not state.sequence_room(len(head.records)):
            state.new_session()
            return None, 0.0
        if head is state.open:
            state.open = None
        return state.batches.popleft(), None

    def _dispatch(self, state: TabletQueue, batch: ProducerBatch) -> None:
        """Start an attempt of ``batch`` (numbering and encoding it on its first)."""
        if batch.payload is None:
            if time.monotonic() >= batch.deadline:
                self._fail(
                    state,
                    batch,
                    DeliveryTimeout(
                        f"{len(batch.records)} records for tablet {batch.tablet} of log "
                        f"{self._log!r} waited {self._delivery_timeout_s:g} s without being sent",
                        None,
                    ),
                )
                return
            state.encode(batch, idempotent=self._idempotent)
            batch.sent_at = time.monotonic()
        elif batch.needs_restamp:
            state.restamp(batch)
        batch.sent_alone = not state.in_flight
        state.in_flight.append(batch)
        task = asyncio.get_running_loop().create_task(self._attempt(state, batch))
        self._attempts.add(task)
        task.add_done_callback(self._attempts.discard)

    async def _attempt(self, state: TabletQueue, batch: ProducerBatch) -> None:
        """One request for ``batch``; settles it or queues it for a retry."""
        try:
            base_offset = await self._send_once(state, batch)
        except ClientError as exc:
            state.in_flight.remove(batch)
            self._on_failure(state, batch, exc)
        except Exception as exc:  # noqa: BLE001 - a bug: fail the batch, do not leave it hanging
            state.in_flight.remove(batch)
            self._fail(state, batch, exc)
        except asyncio.CancelledError:
            state.in_flight.remove(batch)
            self._fail(state, batch, ProducerClosed("the attempt was cancelled"))
            raise
        else:
            state.in_flight.remove(batch)
            self._succeed(state, batch, base_offset)
        finally:
            state.wakeup.set()

    def _on_failure(self, state: TabletQueue, batch: ProducerBatch, exc: ClientError) -> None:
        delay: float | None
        if isinstance(exc, OutOfOrderSequence) and self._idempotent:
            if not batch.sent_alone:
                delay = 0.0  # an earlier batch failed, or this request overtook it
            elif batch.producer_id != state.producer_id:
                batch.needs_restamp = True  # an abandoned session's batch the leader never wrote
                delay = 0.0
            else:
                delay = None
        elif isinstance(exc, UnknownProducer) and self._idempotent:
            self._identities.forget_shared()  # the cluster no longer takes it
            if batch.producer_id == state.producer_id:
                state.new_session()
            batch.needs_restamp = batch.attempts == 0
            delay = 0.0 if batch.needs_restamp else None
        else:
            delay = self._retry_delay(state, exc, batch.attempts)
        now = time.monotonic()
        if delay is None:
            self._fail(state, batch, exc)
        elif now + delay >= batch.deadline:
            self._fail(
                state,
                batch,
                DeliveryTimeout(
                    f"gave up on {batch.count} records for tablet {batch.tablet} of log "
                    f"{self._log!r} after {batch.attempts + 1} attempts: {exc.message}",
                    exc,
                ),
            )
        else:
            batch.attempts += 1
            batch.retry_at = now + delay
            state.add_retry(batch)
            state.recovering = True
            self.stats.retries += 1

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

    async def _send_once(self, state: TabletQueue, batch: ProducerBatch) -> int:
        """POST the batch to the tablet leader; returns its base offset (-1 with acks 0).

        The leader may hold a request up to its ``timeout_ms`` (waiting for replicas or for
        leadership to settle), so that is capped by what is left of the delivery timeout.
        """
        timeout_s = min(self._request_timeout_s, max(batch.deadline - time.monotonic(), 0.1))
        metadata = self._client.metadata
        address = None if state.stale_leader else metadata.leader_address(self._log, state.tablet)
        if address is None:
            await metadata.log(self._log, refresh=True)
            state.stale_leader = False
            address = metadata.leader_address(self._log, state.tablet)
            if address is None:
                raise NoLeader(f"no leader known for tablet {state.tablet} of log {self._log!r}")
        headers = {"Content-Type": BATCH_CONTENT_TYPE, NO_FORWARD_HEADER: "1"}
        if batch.producer_token is not None:
            headers[PRODUCER_TOKEN_HEADER] = batch.producer_token
        response = await self._client.transport.request(
            "POST",
            address,
            log_path(self._log, "tablets", state.tablet, "batches"),
            params={"acks": self._acks, "timeout_ms": int(timeout_s * 1000)},
            data=batch.payload,
            headers=headers,
            timeout_s=timeout_s + 2,  # the leader answers by timeout_ms; 2 s for the network
        )
        answer = response.json_object()
        if answer.get("duplicate") is True:
            self.stats.duplicates += 1
        base = answer.get("base_offset")
        if self._acks == "0" or not isinstance(base, int) or isinstance(base, bool):
            return -1
        return base

    # -----------------------------------------------------------------------------------------
    # settling a batch

    def _succeed(self, state: TabletQueue, batch: ProducerBatch, base_offset: int) -> None:
        if batch.producer_id == state.producer_id:
            state.session_acked = True
        if batch.sent_alone and not state.in_flight:
            state.recovering = False  # the leader holds everything before the failed batches
        stats = self.stats
        stats.batches_sent += 1
        stats.records_sent += batch.count
        stats.bytes_sent += len(batch.payload or b"")
        stats.batch_latencies_s.append(time.monotonic() - batch.sent_at)
        if not batch.future.done():
            batch.future.set_result(base_offset)
        self._settled(batch)

    def _fail(self, state: TabletQueue, batch: ProducerBatch, exc: BaseException) -> None:
        self.stats.failed_batches += 1
        self.stats.last_error = exc
        if (
            self._idempotent
            and batch.payload is not None
            and batch.producer_id == state.producer_id
        ):
            # the leader may or may not hold this sequence range now: start a new session
            state.new_session()
        if not batch.future.done():
            batch.future.set_exception(exc)
        self._settled(batch)

    def _settled(self, batch: ProducerBatch) -> None:
        """Free the bytes (deliveries the caller keeps hold only the batch's outcome)."""
        self._release(batch)
        batch.payload = None
        batch.records = []
