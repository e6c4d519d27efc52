"""Consumer: decoding, positions, start points, out-of-range handling and fail-over."""

from __future__ import annotations

import pytest

from client.async_client import AsyncClient
from client.consumer import parse_start
from client.errors import ConnectionFailed, NotFound, OffsetOutOfRange, ProtocolError
from client.transport import BATCH_CONTENT_TYPE, Response
from tests.client.conftest import Scripted
from tests.client.fakes import Call, error_response, json_response
from wire.batch import build_batch


class TabletLog:
    """Answers the binary consume endpoint from a list of (base offset, values) batches."""

    def __init__(
        self,
        batches: list[tuple[int, list[bytes]]],
        high_watermark: int,
        start_offset: int = 0,
        per_fetch: int | None = None,
    ) -> None:
        self.batches = batches
        self.high_watermark = high_watermark
        self.start_offset = start_offset
        self.per_fetch = per_fetch  # batches per answer at most (as max_bytes would)

    def answer(self, call: Call) -> Response:
        offset = int(call.params["offset"])
        if not self.start_offset <= offset <= self.high_watermark:
            return error_response(
                400,
                "offset_out_of_range",
                start_offset=self.start_offset,
                end_offset=self.high_watermark,
            )
        body = b""
        next_offset = offset
        answered = 0
        for base, values in self.batches:
            end = base + len(values)
            if end <= offset or end > self.high_watermark:
                continue
            if self.per_fetch is not None and answered == self.per_fetch:
                break
            answered += 1
            body += build_batch(
                [(b"k", v) for v in values],
                base_offset=base,
                append_time_ms=1_700_000_000_000 + base,
            )
            next_offset = end
        headers = {
            "Content-Type": BATCH_CONTENT_TYPE,
            "X-Tabletlog-High-Watermark": str(self.high_watermark),
            "X-Tabletlog-Start-Offset": str(self.start_offset),
            "X-Tabletlog-Next-Offset": str(next_offset),
        }
        return Response(200, body, headers)


def values(records: list[object]) -> list[bytes | None]:
    return [r.value for r in records]  # type: ignore[attr-defined]


async def test_reads_records_in_order_and_stops_at_the_end(
    client: AsyncClient, scripted: Scripted
) -> None:
    tablet = TabletLog([(0, [b"a", b"b"]), (2, [b"c"]), (3, [b"d", b"e"])], high_watermark=5)
    scripted.data = tablet.answer
    consumer = client.consume("events", 0, 0, stop_at_end=True)
    records = [r async for r in consumer]
    assert [r.offset for r in records] == [0, 1, 2, 3, 4]
    assert values(records) == [b"a", b"b", b"c", b"d", b"e"]  # type: ignore[arg-type]
    assert records[0].key == b"k"
    assert records[3].timestamp == 1_700_000_000_003
    assert consumer.position == 5
    assert consumer.high_watermark == 5


async def test_records_before_the_asked_offset_are_skipped(
    client: AsyncClient, scripted: Scripted
) -> None:
    scripted.data = TabletLog([(0, [b"a", b"b", b"c", b"d"])], high_watermark=4).answer
    records = [r async for r in client.consume("events", 0, 2, stop_at_end=True)]
    assert [r.offset for r in records] == [2, 3]


async def test_fetches_ask_the_leader_with_long_poll(
    client: AsyncClient, scripted: Scripted
) -> None:
    scripted.metadata.leaders[1] = "n2"
    scripted.data = TabletLog([(0, [b"a"])], high_watermark=1).answer
    consumer = client.consume("events", 1, "earliest", wait_ms=700)
    assert [r.offset for r in await consumer.poll()] == [0]
    fetch = scripted.transport.data_calls()[0]
    assert fetch.method == "GET"
    assert fetch.address == "h2:2"
    assert fetch.path == "/v1/logs/events/tablets/1/batches"
    assert fetch.params["wait_ms"] == "700"
    assert fetch.params["offset"] == "0"
    assert fetch.timeout_s > 0.7


async def test_earliest_and_latest_come_from_the_tablet_description(
    client: AsyncClient, scripted: Scripted
) -> None:
    scripted.metadata.start_offsets[0] = 3
    scripted.metadata.high_watermarks[0] = 6
    scripted.data = TabletLog([(3, [b"d", b"e", b"f"])], high_watermark=6, start_offset=3).answer
    earliest = [r.offset async for r in client.consume("events", 0, "earliest", stop_at_end=True)]
    assert earliest == [3, 4, 5]
    latest = client.consume("events", 0, "latest", stop_at_end=True)
    assert [r async for r in latest] == []
    assert latest.position == 6


async def test_timestamp_start_uses_the_offsets_endpoint(
    client: AsyncClient, scripted: Scripted
) -> None:
    log = TabletLog([(0, [b"a", b"b", b"c"])], high_watermark=3)

    def answer(call: Call) -> Response:
        if call.path.endswith("/offsets"):
            assert call.params == {"timestamp": "1700000000001"}
            return json_response(200, {"offset": 1})
        return log.answer(call)

    scripted.data = answer
    start = {"timestamp": 1_700_000_000_001}
    records = [r.offset async for r in client.consume("events", 0, start, stop_at_end=True)]
    assert records == [1, 2]


async def test_out_of_range_raises_with_the_valid_range(
    client: AsyncClient, scripted: Scripted
) -> None:
    scripted.data = TabletLog([(5, [b"f"])], high_watermark=6, start_offset=5).answer
    with pytest.raises(OffsetOutOfRange) as caught:
        await client.consume("events", 0, 1).poll()
    assert (caught.value.start_offset, caught.value.end_offset) == (5, 6)


async def test_out_of_range_resets_to_earliest_when_asked(
    client: AsyncClient, scripted: Scripted
) -> None:
    scripted.data = TabletLog([(5, [b"f"])], high_watermark=6, start_offset=5).answer
    consumer = client.consume("events", 0, 1, reset="earliest", stop_at_end=True)
    assert [r.offset async for r in consumer] == [5]


async def test_connection_errors_move_to_another_node(
    client: AsyncClient, scripted: Scripted
) -> None:
    scripted.metadata.leaders[0] = "n1"
    log = TabletLog([(0, [b"a", b"b"])], high_watermark=2)

    def answer(call: Call) -> Response | BaseException:
        if call.address == "h1:1":
            return ConnectionFailed("refused", address=call.address, sent=False)
        return log.answer(call)

    scripted.data = answer
    records = [r.offset async for r in client.consume("events", 0, 0, stop_at_end=True)]
    assert records == [0, 1]
    assert [c.address for c in scripted.transport.data_calls()][:2] == ["h1:1", "h2:2"]


async def test_no_leader_is_retried_until_the_tablet_answers(
    client: AsyncClient, scripted: Scripted
) -> None:
    log = TabletLog([(0, [b"a"])], high_watermark=1)
    failures = [error_response(503, "no_leader")] * 2

    def answer(call: Call) -> Response:
        return failures.pop() if failures else log.answer(call)

    scripted.data = answer
    consumer = client.consume("events", 0, 0, stop_at_end=True, retry_backoff_ms=1)
    assert [r.offset async for r in consumer] == [0]


async def test_a_corrupt_batch_is_a_protocol_error(client: AsyncClient, scripted: Scripted) -> None:
    good = build_batch([(None, b"a")])
    corrupt = good[:-1] + bytes([good[-1] ^ 0xFF])
    scripted.data = lambda _call: Response(200, corrupt, {"X-Tabletlog-High-Watermark": "1"})
    with pytest.raises(ProtocolError, match="corrupt"):
        await client.consume("events", 0, 0).poll()


async def test_an_unknown_tablet_is_not_found(client: AsyncClient) -> None:
    with pytest.raises(NotFound):
        await client.consume("events", 7, "earliest").poll()


async def test_seek_moves_the_position(client: AsyncClient, scripted: Scripted) -> None:
    scripted.data = TabletLog([(0, [b"a", b"b", b"c"])], high_watermark=3).answer
    consumer = client.consume("events", 0, 0, stop_at_end=True)
    assert [r.offset for r in await consumer.poll()] == [0, 1, 2]
    await consumer.seek(1)
    assert [r.offset async for r in consumer] == [1, 2]


@pytest.mark.parametrize("start", ["earliest", "latest", 0, 12, {"timestamp": 5}])
def test_parse_start_accepts_the_four_forms(start: object) -> None:
    assert parse_start(start) == start


@pytest.mark.parametrize("start", ["first", -1, True, 1.5, {"ts": 1}, {"timestamp": "x"}])
def test_parse_start_rejects_anything_else(start: object) -> None:
    with pytest.raises(ValueError, match="a start is"):
        parse_start(start)


# ---------------------------------------------------------------------------------------------
# fetching ahead


def three_batches() -> TabletLog:
    return TabletLog(
        [(0, [b"a", b"b"]), (2, [b"c"]), (3, [b"d", b"e"])], high_watermark=5, per_fetch=1
    )


async def test_the_next_fetch_starts_while_the_records_are_decoded(
    client: AsyncClient, scripted: Scripted
) -> None:
    scripted.data = three_batches().answer
    consumer = client.consume("events", 0, 0, stop_at_end=True)
    assert [r.offset for r in await consumer.poll()] == [0, 1]
    offsets = [c.params["offset"] for c in scripted.transport.data_calls()]
    assert offsets == ["0", "2"]  # fetched ahead, before the caller asked
    assert [r.offset async for r in consumer] == [2, 3, 4]
    offsets = [c.params["offset"] for c in scripted.transport.data_calls()]
    assert offsets == ["0", "2", "3"]  # nothing ahead of the high watermark


async def test_without_prefetch_one_fetch_per_poll(client: AsyncClient, scripted: Scripted) -> None:
    scripted.data = three_batches().answer
    consumer = client.consume("events", 0, 0, stop_at_end=True, prefetch=False)
    assert [r.offset for r in await consumer.poll()] == [0, 1]
    assert len(scripted.transport.data_calls()) == 1
    assert [r.offset async for r in consumer] == [2, 3, 4]


async def test_a_failed_fetch_ahead_is_retried(client: AsyncClient, scripted: Scripted) -> None:
    log = three_batches()
    failures = [ConnectionFailed("reset", address="h1:1")]

    def answer(call: Call) -> Response | BaseException:
        if call.params["offset"] == "2" and failures:
            return failures.pop()
        return log.answer(call)

    scripted.data = answer
    consumer = client.consume("events", 0, 0, stop_at_end=True, retry_backoff_ms=1)
    assert [r.offset async for r in consumer] == [0, 1, 2, 3, 4]
    assert [c.params["offset"] for c in scripted.transport.data_calls()] == ["0", "2", "2", "3"]


async def test_seek_drops_the_fetch_ahead(client: AsyncClient, scripted: Scripted) -> None:
    scripted.data = three_batches().answer
    consumer = client.consume("events", 0, 0, stop_at_end=True)
    assert [r.offset for r in await consumer.poll()] == [0, 1]
    await consumer.seek(0)
    assert [r.offset for r in await consumer.poll()] == [0, 1]
    await consumer.close()
    assert [r.offset async for r in consumer] == [2, 3, 4]
