"""Producer: batching, linger, sequence numbers, routing and retries (via the transport seam)."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from client.accumulator import SEQUENCE_MAX, TabletQueue
from client.async_client import AsyncClient
from client.errors import (
    ConnectionFailed,
    DeliveryTimeout,
    NoLeader,
    NotFound,
    OutOfOrderSequence,
    ProducerClosed,
    RequestTimeout,
    ServerTimeout,
    Unavailable,
    UnknownProducer,
)
from client.models import ProducerIdentity
from client.transport import (
    BATCH_CONTENT_TYPE,
    NO_FORWARD_HEADER,
    PRODUCER_TOKEN_HEADER,
    Response,
)
from tests.client.conftest import Scripted
from tests.client.fakes import Call, error_response, json_response, tablet_of
from wire.batch import iter_records, parse_header
from wire.partitioning import tablet_for_key


async def test_records_sent_within_the_linger_share_one_batch(
    client: AsyncClient, scripted: Scripted
) -> None:
    producer = client.producer("events", linger_ms=50)
    futures = [await producer.send(f"v{i}".encode(), tablet=0) for i in range(10)]
    results = await asyncio.gather(*futures)
    assert [r.offset for r in results] == list(range(10))
    assert all(r.tablet == 0 for r in results)
    calls = scripted.transport.data_calls()
    assert len(calls) == 1
    assert calls[0].batch.record_count == 10
    await producer.close()


async def test_a_batch_waits_for_the_linger_unless_flushed(
    client: AsyncClient, scripted: Scripted
) -> None:
    producer = client.producer("events", linger_ms=10_000)
    future = await producer.send(b"x", tablet=1)
    await asyncio.sleep(0.05)
    assert scripted.transport.data_calls() == []  # still lingering
    started = time.monotonic()
    await producer.flush()
    assert time.monotonic() - started < 1.0
    assert future.result() == (1, 0)
    await producer.close()


async def test_a_short_linger_sends_without_flush(client: AsyncClient, scripted: Scripted) -> None:
    producer = client.producer("events", linger_ms=5)
    future = await producer.send(b"x", tablet=2)
    assert await asyncio.wait_for(future, 2) == (2, 0)
    await producer.close()


async def test_batches_respect_max_batch_bytes_and_number_sequences_contiguously(
    client: AsyncClient, scripted: Scripted
) -> None:
    producer = client.producer("events", linger_ms=1000, max_batch_bytes=1000)
    futures = [await producer.send(bytes(100), tablet=0) for _ in range(25)]
    await producer.flush()
    assert [f.result().offset for f in futures] == list(range(25))
    calls = scripted.transport.data_calls()
    assert len(calls) > 2
    expected_sequence = 0
    for call in calls:
        assert call.data is not None and len(call.data) <= 1000
        header = call.batch
        assert header.base_sequence == expected_sequence
        assert header.producer_id == producer.producer_id > 0
        assert header.producer_epoch == 0
        expected_sequence += header.record_count
    assert expected_sequence == 25
    await producer.close()


async def test_sequences_are_numbered_per_tablet(client: AsyncClient, scripted: Scripted) -> None:
    producer = client.producer("events", linger_ms=0)
    for i in range(12):
        _ = await producer.send(b"v", tablet=i % 2)
        await producer.flush()
    per_tablet: dict[int, list[int]] = {}
    for call in scripted.transport.data_calls():
        per_tablet.setdefault(tablet_of(call), []).append(call.batch.base_sequence)
    assert per_tablet == {0: [0, 1, 2, 3, 4, 5], 1: [0, 1, 2, 3, 4, 5]}
    await producer.close()


async def test_the_producer_id_is_issued_once_and_its_token_goes_with_every_batch(
    client: AsyncClient, scripted: Scripted
) -> None:
    producer = client.producer("events", linger_ms=0)
    assert producer.producer_id == -1  # nothing asked yet
    for i in range(6):
        _ = await producer.send(b"v", tablet=i % 3)
        await producer.flush()
    inits = [c for c in scripted.transport.calls if c.path == "/v1/producers"]
    assert len(inits) == 1 and inits[0].method == "POST"
    assert producer.producer_id == 1
    calls = scripted.transport.data_calls()
    assert len(calls) == 6
    assert all(c.batch.producer_id == 1 and c.batch.producer_epoch == 0 for c in calls)
    assert all(c.headers[PRODUCER_TOKEN_HEADER] == "token-1" for c in calls)
    await producer.close()


async def test_without_idempotence_no_id_is_asked_for_and_no_token_sent(
    client: AsyncClient, scripted: Scripted
) -> None:
    producer = client.producer("events", idempotent=False)
    await (await producer.send(b"v", tablet=0))
    assert not [c for c in scripted.transport.calls if c.path == "/v1/producers"]
    (call,) = scripted.transport.data_calls()
    assert PRODUCER_TOKEN_HEADER not in call.headers and call.batch.producer_id == -1
    await producer.close()


async def test_unknown_producer_renumbers_a_first_attempt_under_a_new_id(
    client: AsyncClient, scripted: Scripted
) -> None:
    refused: list[Call] = []

    def leader(call: Call) -> Response | BaseException:
        if call.headers.get(PRODUCER_TOKEN_HEADER) == "token-1":
            refused.append(call)
            return error_response(403, "unknown_producer")
        return scripted.acks.answer(call)

    scripted.data = leader
    producer = client.producer("events", linger_ms=0)
    assert await asyncio.wait_for(await producer.send(b"a", tablet=0), 5) == (0, 0)
    (sent,) = scripted.acks.batches
    assert len(refused) == 1 and refused[0].batch.producer_id == 1
    assert sent[1].producer_id == 2 and sent[1].base_sequence == 0
    assert producer.stats.failed_batches == 0
    await producer.close()


async def test_unknown_producer_after_an_earlier_attempt_fails_the_batch(
    client: AsyncClient, scripted: Scripted
) -> None:
    answers = [error_response(503, "timeout"), error_response(403, "unknown_producer")]
    scripted.data = lambda call: answers.pop(0) if answers else scripted.acks.answer(call)
    producer = client.producer("events", linger_ms=0, retry_backoff_ms=1)
    first = await producer.send(b"a", tablet=0)
    with pytest.raises(UnknownProducer):
        await asyncio.wait_for(first, 5)  # the timed-out attempt may have been written
    assert await asyncio.wait_for(await producer.send(b"b", tablet=0), 5) == (0, 0)
    last = scripted.transport.data_calls()[-1]
    assert last.batch.producer_id == 2 and last.headers[PRODUCER_TOKEN_HEADER] == "token-2"
    await producer.close()


async def test_a_failing_init_is_retried_then_fails_the_batch_at_its_deadline(
    client: AsyncClient, scripted: Scripted
) -> None:
    issue = scripted.metadata.issue_producer
    failures = [3]

    def init_fails_three_times() -> Response:
        if failures[0]:
            failures[0] -= 1
            return error_response(503, "no_leader")
        return issue()

    scripted.metadata.issue_producer = init_fails_three_times  # type: ignore[method-assign]
    producer = client.producer("events", linger_ms=0, retry_backoff_ms=1)
    assert await asyncio.wait_for(await producer.send(b"a", tablet=0), 5) == (0, 0)
    await producer.close()

    scripted.metadata.issue_producer = lambda: error_response(503, "no_leader")  # type: ignore[method-assign]
    producer = client.producer("events", delivery_timeout_s=0.2, retry_backoff_ms=10)
    with pytest.raises(DeliveryTimeout) as caught:
        await asyncio.wait_for(await producer.send(b"x", tablet=0), 5)
    assert isinstance(caught.value.last_error, (NoLeader, Unavailable))
    await producer.close()


async def test_batch_carries_records_headers_and_goes_to_the_leader(
    client: AsyncClient, scripted: Scripted
) -> None:
    scripted.metadata.leaders[1] = "n3"
    producer = client.producer("events", acks="1")
    _ = await producer.send(b"value", key=b"k", tablet=1)
    _ = await producer.send("text", tablet=1)
    _ = await producer.send(None, tablet=1)
    await producer.flush()
    (call,) = scripted.transport.data_calls()
    assert call.method == "POST"
    assert call.address == "h3:3"
    assert call.path == "/v1/logs/events/tablets/1/batches"
    assert call.headers["Content-Type"] == BATCH_CONTENT_TYPE
    assert call.headers[NO_FORWARD_HEADER] == "1"
    assert call.params["acks"] == "1"
    assert int(call.params["timeout_ms"]) > 0
    assert call.data is not None
    records = [(r.key, r.value) for r in iter_records(call.data)]
    assert records == [(b"k", b"value"), (None, b"text"), (None, None)]
    await producer.close()


# ---------------------------------------------------------------------------------------------
# routing


async def test_keyed_records_follow_tablet_for_key(client: AsyncClient, scripted: Scripted) -> None:
    producer = client.producer("events")
    for key in (b"alpha", b"beta", b"gamma", b"delta", b"user-17"):
        metadata = await (await producer.send(b"v", key=key))
        assert metadata.tablet == tablet_for_key(key, 3)
    await producer.close()


async def test_explicit_tablet_wins_over_key(client: AsyncClient) -> None:
    producer = client.producer("events")
    key = b"alpha"
    other = (tablet_for_key(key, 3) + 1) % 3
    assert (await (await producer.send(b"v", key=key, tablet=other))).tablet == other
    await producer.close()


async def test_keyless_records_are_spread_round_robin(client: AsyncClient) -> None:
    producer = client.producer("events", linger_ms=0)
    futures = [await producer.send(b"v") for _ in range(30)]
    tablets = [(await f).tablet for f in futures]
    assert sorted(tablets.count(t) for t in range(3)) == [10, 10, 10]
    assert all(a != b for a, b in itertools.pairwise(tablets))
    await producer.close()


async def test_unknown_tablet_and_unknown_log_raise_not_found(client: AsyncClient) -> None:
    producer = client.producer("events")
    with pytest.raises(NotFound, match="no tablet 3"):
        _ = await producer.send(b"v", tablet=3)
    with pytest.raises(NotFound):
        _ = await client.producer("missing").send(b"v")
    await producer.close()


# ---------------------------------------------------------------------------------------------
# retries and idempotence


async def test_a_retry_resends_the_same_bytes_and_a_duplicate_gets_original_offsets(
    client: AsyncClient, scripted: Scripted
) -> None:
    attempts: list[bytes] = []

    def leader(call: Call) -> Response | BaseException:
        assert call.data is not None
        attempts.append(call.data)
        if len(attempts) == 1:
            scripted.acks.answer(call)  # appended at offsets 0..2, but the answer is lost
            return RequestTimeout("no answer", address=call.address)
        return json_response(
            200, {"tablet": 0, "base_offset": 0, "end_offset": 3, "duplicate": True}
        )

    scripted.data = leader
    producer = client.producer("events", retry_backoff_ms=1)
    futures = [await producer.send(f"r{i}", tablet=0) for i in range(3)]
    await producer.flush()
    assert [f.result() for f in futures] == [(0, 0), (0, 1), (0, 2)]
    assert len(attempts) == 2
    assert attempts[0] == attempts[1]  # byte-identical: same producer id and sequence
    assert producer.stats.retries == 1
    assert producer.stats.duplicates == 1
    await producer.close()


@pytest.mark.parametrize(
    "failure",
    [
        error_response(503, "timeout"),
        error_response(503, "not_enough_replicas"),
        error_response(503, "no_leader"),
        ConnectionFailed("refused", sent=False),
    ],
)
async def test_retriable_errors_are_retried(
    client: AsyncClient, scripted: Scripted, failure: Response | BaseException
) -> None:
    answers: list[Response | BaseException] = [failure, failure]

    def leader(call: Call) -> Response | BaseException:
        return answers.pop(0) if answers else scripted.acks.answer(call)

    scripted.data = leader
    producer = client.producer("events", retry_backoff_ms=1)
    future = await producer.send(b"x", tablet=0)
    assert await asyncio.wait_for(future, 5) == (0, 0)
    assert producer.stats.retries == 2
    await producer.close()


async def test_not_leader_hint_redirects_at_once(client: AsyncClient, scripted: Scripted) -> None:
    scripted.metadata.leaders[0] = "n1"

    def leader(call: Call) -> Response | BaseException:
        if call.address == "h1:1":
            return error_response(421, "not_leader", leader="n2", leader_address="h2:2")
        return scripted.acks.answer(call)

    scripted.data = leader
    producer = client.producer("events", retry_backoff_ms=10_000)  # a backoff would time out
    future = await producer.send(b"x", tablet=0)
    assert await asyncio.wait_for(future, 2) == (0, 0)
    assert [c.address for c in scripted.transport.data_calls()] == ["h1:1", "h2:2"]
    await producer.close()


async def test_connection_failure_refreshes_the_leader(
    client: AsyncClient, scripted: Scripted
) -> None:
    scripted.metadata.leaders[0] = "n1"

    def leader(call: Call) -> Response | BaseException:
        if call.address == "h1:1":
            scripted.metadata.leaders[0] = "n3"  # the cluster elected n3 meanwhile
            return ConnectionFailed("connection reset", address=call.address)
        return scripted.acks.answer(call)

    scripted.data = leader
    producer = client.producer("events", retry_backoff_ms=1)
    future = await producer.send(b"x", tablet=0)
    assert await asyncio.wait_for(future, 2) == (0, 0)
    assert [c.address for c in scripted.transport.data_calls()] == ["h1:1", "h3:3"]
    assert scripted.metadata.log_requests >= 2
    await producer.close()


async def test_a_failed_batch_starts_a_new_session_for_its_tablet(
    client: AsyncClient, scripted: Scripted
) -> None:
    answers = [error_response(409, "out_of_order_sequence")]

    def leader(call: Call) -> Response | BaseException:
        return answers.pop(0) if answers else scripted.acks.answer(call)

    scripted.data = leader
    producer = client.producer("events", linger_ms=0)
    first = await producer.send(b"a", tablet=0)
    with pytest.raises(OutOfOrderSequence):
        await first
    _ = await producer.send(b"b", tablet=0)
    await producer.flush()
    failed, retried = scripted.transport.data_calls()
    assert failed.batch.base_sequence == 0
    assert retried.batch.base_sequence == 0
    assert retried.batch.producer_id != failed.batch.producer_id
    await producer.close()


async def test_delivery_timeout_reports_the_last_error(
    client: AsyncClient, scripted: Scripted
) -> None:
    scripted.data = lambda _call: error_response(503, "no_leader")
    producer = client.producer("events", delivery_timeout_s=0.3, retry_backoff_ms=20)
    future = await producer.send(b"x", tablet=0)
    with pytest.raises(DeliveryTimeout) as caught:
        await asyncio.wait_for(future, 5)
    assert isinstance(caught.value.last_error, NoLeader)
    await producer.close()


async def test_without_idempotence_an_unknown_outcome_is_not_retried(
    client: AsyncClient, scripted: Scripted
) -> None:
    scripted.data = lambda _call: error_response(503, "timeout")
    producer = client.producer("events", idempotent=False, retry_backoff_ms=1)
    future = await producer.send(b"x", tablet=0)
    with pytest.raises(ServerTimeout):
        await future
    (call,) = scripted.transport.data_calls()
    assert call.batch.producer_id == -1
    assert call.batch.base_sequence == -1
    await producer.close()


async def test_acks_zero_reports_offset_minus_one(client: AsyncClient, scripted: Scripted) -> None:
    producer = client.producer("events", acks="0")
    assert await (await producer.send(b"x", tablet=0)) == (0, -1)
    assert scripted.transport.data_calls()[0].params["acks"] == "0"
    await producer.close()


async def test_without_idempotence_one_batch_in_flight_per_tablet(
    client: AsyncClient, scripted: Scripted
) -> None:
    release = asyncio.Event()
    in_flight = 0
    most = 0

    async def slow_leader(call: Call) -> Response | BaseException:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await release.wait()
        in_flight -= 1
        return scripted.acks.answer(call)

    scripted.data = slow_leader
    producer = client.producer("events", linger_ms=0, max_batch_records=1, idempotent=False)
    futures = [await producer.send(b"x", tablet=0) for _ in range(5)]
    await asyncio.sleep(0.05)
    assert len(scripted.transport.data_calls()) == 1
    release.set()
    assert [(await f).offset for f in futures] == [0, 1, 2, 3, 4]
    assert most == 1
    sequences = [c.batch.base_sequence for c in scripted.transport.data_calls()]
    assert sequences == [-1] * 5
    await producer.close()


async def test_send_waits_when_the_buffer_is_full(client: AsyncClient, scripted: Scripted) -> None:
    release = asyncio.Event()

    async def slow_leader(call: Call) -> Response | BaseException:
        await release.wait()
        return scripted.acks.answer(call)

    scripted.data = slow_leader
    producer = client.producer("events", linger_ms=0, max_buffer_bytes=2000)
    _ = await producer.send(bytes(1500), tablet=0)
    blocked = asyncio.ensure_future(producer.send(bytes(1500), tablet=0))
    await asyncio.sleep(0.05)
    assert not blocked.done()
    release.set()
    second = await asyncio.wait_for(blocked, 2)
    assert (await second).offset == 1
    await producer.close()


async def test_send_after_close_raises(client: AsyncClient) -> None:
    producer = client.producer("events")
    _ = await producer.send(b"x", tablet=0)
    await producer.close()
    with pytest.raises(ProducerClosed):
        _ = await producer.send(b"y")


async def test_send_and_wait(client: AsyncClient) -> None:
    async with client.producer("events", linger_ms=10_000) as producer:
        assert await asyncio.wait_for(producer.send_and_wait(b"x", tablet=2), 2) == (2, 0)


async def test_bad_options_are_rejected(client: AsyncClient) -> None:
    with pytest.raises(ValueError, match="acks"):
        client.producer("events", acks="2")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_batch_bytes"):
        client.producer("events", max_batch_bytes=10)


async def test_a_session_near_the_sequence_limit_starts_over() -> None:
    queue = TabletQueue(0)
    queue.adopt(ProducerIdentity(5, 0, "token-5"))
    queue.next_sequence, queue.session_acked = SEQUENCE_MAX - 1, True
    batch = queue.open_batch(time.monotonic(), 60)
    batch.records.extend([(None, b"v")] * 3)
    assert not queue.sequence_room(3)
    queue.new_session()  # what the sender does before numbering such a batch
    assert queue.producer_id == -1 and queue.needs_identity()
    queue.adopt(ProducerIdentity(6, 0, "token-6"))
    queue.encode(batch, idempotent=True)
    assert batch.payload is not None
    header = parse_header(batch.payload)
    assert header.producer_id == batch.producer_id == queue.producer_id == 6
    assert batch.producer_token == "token-6"
    assert header.base_sequence == 0
    assert queue.next_sequence == 3
    assert not queue.session_acked  # the leader does not know the new id yet
