"""Several batches in flight per tablet: pipelining, and exactly-once, in-order delivery across
failures in the middle of the pipeline (against ``IdempotentLeader``, which checks sequences
with the server's own rules)."""

from __future__ import annotations

import asyncio
import random

import pytest

from client.accumulator import Delivery
from client.async_client import AsyncClient
from client.errors import BadRequest, DeliveryTimeout, RequestTimeout
from client.producer import Producer
from client.transport import Response
from tests.client.conftest import Scripted
from tests.client.fakes import Call, IdempotentLeader, tablet_of

BATCH = 10  # records per batch in these tests (max_batch_records)


def use(scripted: Scripted, leader: IdempotentLeader) -> IdempotentLeader:
    scripted.data = leader.answer
    return leader


def make_producer(client: AsyncClient, **options: object) -> Producer:
    settings: dict[str, object] = {
        "linger_ms": 0,
        "max_batch_records": BATCH,
        "retry_backoff_ms": 1,
        "retry_backoff_max_ms": 10,
    }
    return client.producer("events", **{**settings, **options})  # type: ignore[arg-type]


async def send_values(producer: Producer, count: int, tablet: int = 0) -> list[Delivery]:
    return [await producer.send(f"r{i}".encode(), tablet=tablet) for i in range(count)]


def sequence_of(call: Call) -> int:
    return call.batch.base_sequence


def assert_exactly_once_in_order(
    leader: IdempotentLeader, deliveries: list[Delivery], tablet: int = 0
) -> None:
    """Every record is in the tablet's log once, in sending order, where its delivery says."""
    assert leader.logs[tablet] == [f"r{i}".encode() for i in range(len(deliveries))]
    assert [d.result() for d in deliveries] == [(tablet, i) for i in range(len(deliveries))]


async def test_up_to_five_batches_fly_once_the_first_is_acknowledged(
    client: AsyncClient, scripted: Scripted
) -> None:
    leader = use(scripted, IdempotentLeader(latency_s=0.01))
    producer = make_producer(client)
    deliveries = await send_values(producer, 20 * BATCH)
    await producer.close()
    assert_exactly_once_in_order(leader, deliveries)
    assert leader.active_at_start[0] == 1
    assert leader.active_at_start[1] == 1  # the session's first batch went alone
    assert leader.most_active == 5
    assert producer.stats.retries == 0
    assert producer.stats.batches_sent == 20


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"idempotent": False}, 1),
        ({"max_in_flight_per_tablet": 1}, 1),
        ({"max_in_flight_per_tablet": 3}, 3),
    ],
)
async def test_the_in_flight_limit(
    client: AsyncClient, scripted: Scripted, options: dict[str, object], expected: int
) -> None:
    leader = use(scripted, IdempotentLeader(latency_s=0.01))
    producer = make_producer(client, **options)
    deliveries = await send_values(producer, 12 * BATCH)
    await producer.close()
    assert_exactly_once_in_order(leader, deliveries)
    assert leader.most_active == expected


async def test_the_in_flight_limit_is_checked(client: AsyncClient) -> None:
    with pytest.raises(ValueError, match="max_in_flight_per_tablet"):
        client.producer("events", max_in_flight_per_tablet=6)  # the leader remembers 5
    with pytest.raises(ValueError, match="max_in_flight_per_tablet"):
        client.producer("events", max_in_flight_per_tablet=0)


@pytest.mark.parametrize("fault", ["refuse", "lost", "timeout"])
async def test_a_failure_in_the_middle_of_the_pipeline_keeps_exactly_once_and_order(
    client: AsyncClient, scripted: Scripted, fault: str
) -> None:
    # request 0 is batch 0 alone; then batches 1-5 fly together and batch 2 fails once
    leader = use(
        scripted, IdempotentLeader(latency_s=0.01, fault=lambda n, _call: fault if n == 2 else None)
    )
    producer = make_producer(client)
    deliveries = await send_values(producer, 12 * BATCH)
    await producer.close()
    assert_exactly_once_in_order(leader, deliveries)
    assert leader.most_active == 5
    assert producer.stats.retries >= 1
    assert producer.stats.failed_batches == 0
    if fault == "lost":
        assert producer.stats.duplicates == 1  # batch 2 was written: its resend is a duplicate


async def test_a_request_overtaking_an_earlier_one_is_retried_in_order(
    client: AsyncClient, scripted: Scripted
) -> None:
    # batch 2's request reaches the leader after batches 3-5: they get out_of_order_sequence
    leader = use(
        scripted, IdempotentLeader(latency_s=0.005, delay=lambda n: 0.05 if n == 2 else 0.0)
    )
    producer = make_producer(client)
    deliveries = await send_values(producer, 12 * BATCH)
    await producer.close()
    assert_exactly_once_in_order(leader, deliveries)
    assert producer.stats.retries >= 3
    assert producer.stats.failed_batches == 0


async def test_a_batch_failing_for_good_mid_pipeline_leaves_the_rest_once_and_in_order(
    client: AsyncClient, scripted: Scripted
) -> None:
    calls: list[Call] = []

    def fault(n: int, call: Call) -> str | None:
        calls.append(call)
        return "bad" if n == 2 else None

    leader = use(scripted, IdempotentLeader(latency_s=0.01, fault=fault))
    producer = make_producer(client)
    deliveries = await send_values(producer, 12 * BATCH)
    await producer.close()
    failed_batch = calls[2].batch.base_sequence // BATCH
    failed = range(failed_batch * BATCH, (failed_batch + 1) * BATCH)
    for i in failed:
        with pytest.raises(BadRequest):
            deliveries[i].result()
    written = [f"r{i}".encode() for i in range(len(deliveries)) if i not in failed]
    assert leader.logs[0] == written  # later batches moved to a new session, in order, once
    offsets = [deliveries[i].result().offset for i in range(len(deliveries)) if i not in failed]
    assert offsets == list(range(len(written)))
    producer_ids = {c.batch.producer_id for c in calls}
    assert len(producer_ids) == 2
    assert producer.stats.failed_batches == 1


async def test_a_batch_given_up_on_after_lost_answers_is_not_written_twice(
    client: AsyncClient, scripted: Scripted
) -> None:
    first: list[int] = []

    def fault(_n: int, call: Call) -> str | None:
        header = call.batch
        if not first:
            first.append(header.producer_id)
        # every answer for batch 2 of the first session is lost (it is written once, though)
        lost = header.producer_id == first[0] and header.base_sequence == 2 * BATCH
        return "lost" if lost else None

    leader = use(scripted, IdempotentLeader(latency_s=0.005, fault=fault))
    producer = make_producer(client, delivery_timeout_s=0.5)
    deliveries = await send_values(producer, 6 * BATCH)
    await producer.flush()  # batch 2 holds the tablet (its window) until it is given up on
    deliveries += [await producer.send(f"r{i}".encode(), tablet=0) for i in range(60, 120)]
    await producer.close()
    assert leader.logs[0] == [f"r{i}".encode() for i in range(len(deliveries))]
    assert producer.stats.failed_batches == 1
    for i, delivery in enumerate(deliveries):
        if 2 * BATCH <= i < 3 * BATCH:
            error = delivery.exception()
            assert isinstance(error, DeliveryTimeout)
            assert isinstance(error.last_error, RequestTimeout)  # outcome unknown: it was written
        else:
            assert delivery.result() == (0, i)


async def run_random_faults(
    client: AsyncClient, scripted: Scripted, seed: int, in_flight: int = 5
) -> Producer:
    """1500 records round robin over 3 tablets through lost answers, timeouts, refused
    connections, reordered requests and a few non-retriable failures; checks that the logs
    hold exactly the acknowledged records, once each, in sending order, where acknowledged."""
    rng = random.Random(seed)
    seen: set[tuple[int, int, int]] = set()

    def fault(_n: int, call: Call) -> str | None:
        header = call.batch
        batch = (tablet_of(call), header.producer_id, header.base_sequence)
        first_attempt = batch not in seen
        seen.add(batch)
        roll = rng.random()
        for kind, below in (("lost", 0.1), ("timeout", 0.15), ("refuse", 0.2), ("bad", 0.22)):
            if roll < below:
                # a leader rejects the same bytes the same way: a batch it may have written
                # (an earlier answer was lost) is not rejected as malformed
                return kind if kind != "bad" or first_attempt else None
        return None

    leader = use(
        scripted,
        IdempotentLeader(
            latency_s=0.001, fault=fault, delay=lambda _n: rng.choice([0.0, 0.0, 0.0, 0.01])
        ),
    )
    producer = make_producer(client, max_batch_records=7, max_in_flight_per_tablet=in_flight)
    sent: dict[int, list[tuple[bytes, Delivery]]] = {0: [], 1: [], 2: []}
    for i in range(1500):
        value = f"r{i}".encode()
        delivery = await producer.send(value)  # round robin over the three tablets
        sent[delivery.tablet].append((value, delivery))
        if i % 100 == 0:
            await asyncio.sleep(0.005)
    await asyncio.wait_for(producer.close(), 30)
    assert producer.stats.retries > 0
    for tablet, records in sent.items():
        for _value, delivery in records:
            assert delivery.exception() is None or isinstance(delivery.exception(), BadRequest)
        acknowledged = [(v, d) for v, d in records if d.exception() is None]
        assert leader.logs[tablet] == [v for v, _d in acknowledged]
        assert [d.result() for _v, d in acknowledged] == [
            (tablet, i) for i in range(len(acknowledged))
        ]
    return producer


@pytest.mark.parametrize(("seed", "in_flight"), [(1, 5), (2, 5), (3, 5), (4, 2)])
async def test_random_faults_and_reorderings_never_lose_duplicate_or_reorder(
    client: AsyncClient, scripted: Scripted, seed: int, in_flight: int
) -> None:
    await run_random_faults(client, scripted, seed, in_flight)


async def test_send_yields_so_batches_leave_while_the_caller_keeps_producing(
    client: AsyncClient, scripted: Scripted
) -> None:
    leader = use(scripted, IdempotentLeader(latency_s=0))
    producer = client.producer("events", linger_ms=1000, max_batch_bytes=4096)
    for _ in range(2000):  # never awaits anything but send
        _ = await producer.send(bytes(100), tablet=0)
    assert producer.stats.batches_sent > 0  # full batches left during the loop
    await producer.close()
    assert len(leader.logs[0]) == 2000


async def test_delivery_handle(client: AsyncClient, scripted: Scripted) -> None:
    release = asyncio.Event()

    async def held(call: Call) -> Response | BaseException:
        await release.wait()
        return await leader.answer(call)

    leader = IdempotentLeader(latency_s=0)
    scripted.data = held
    producer = client.producer("events", linger_ms=0)
    first = await producer.send(b"a", tablet=1)
    second = await producer.send(b"b", tablet=1)
    assert not first.done()
    with pytest.raises(asyncio.InvalidStateError):
        first.result()
    called: list[Delivery] = []
    second.add_done_callback(called.append)
    with pytest.raises(TimeoutError):  # cancelling one waiter cancels nothing else
        await asyncio.wait_for(first, 0.01)
    release.set()
    assert await second == (1, 1)
    assert await first == (1, 0)
    assert first.done() and not first.cancelled() and first.exception() is None
    assert first.tablet == 1
    await asyncio.sleep(0)
    assert called == [second]
    assert "(1, 0)" in repr(first) or "offset=0" in repr(first)
    await producer.close()
