"""Error mapping, bootstrap parsing and fail-over, the metadata cache and admin calls."""

from __future__ import annotations

import asyncio

import pytest

from client.async_client import AsyncClient
from client.errors import (
    AlreadyExists,
    BadRequest,
    ClusterUnreachable,
    ConnectionFailed,
    NoLeader,
    NotEnoughReplicas,
    NotFound,
    NotLeader,
    OffsetOutOfRange,
    OutOfOrderSequence,
    PayloadTooLarge,
    ServerError,
    ServerTimeout,
    StaleEpoch,
    Unavailable,
    error_from_response,
)
from client.metadata import log_path, parse_bootstrap
from client.models import Status
from client.transport import Response
from tests.client.conftest import BOOTSTRAP, Scripted
from tests.client.fakes import Call, FakeTransport, error_response, json_response


@pytest.mark.parametrize(
    ("status", "code", "cls", "retriable", "refresh"),
    [
        (400, "bad_request", BadRequest, False, False),
        (404, "not_found", NotFound, False, False),
        (409, "already_exists", AlreadyExists, False, False),
        (400, "offset_out_of_range", OffsetOutOfRange, False, False),
        (413, "payload_too_large", PayloadTooLarge, False, False),
        (409, "out_of_order_sequence", OutOfOrderSequence, False, False),
        (503, "not_enough_replicas", NotEnoughReplicas, True, False),
        (503, "no_leader", NoLeader, True, True),
        (421, "not_leader", NotLeader, True, True),
        (409, "stale_epoch", StaleEpoch, True, True),
        (503, "timeout", ServerTimeout, True, False),
        (503, "something_new", Unavailable, True, True),
        (500, "internal", ServerError, False, False),
    ],
)
def test_server_codes_map_to_classes(
    status: int, code: str, cls: type[ServerError], retriable: bool, refresh: bool
) -> None:
    error = error_from_response(status, error_response(status, code, "why").body)
    assert type(error) is cls
    assert error.retriable is retriable
    assert error.refresh_metadata is refresh
    assert error.status == status
    assert error.message == f"{code}: why"


def test_unparseable_error_bodies_map_by_status() -> None:
    assert isinstance(error_from_response(404, b"<html>"), NotFound)
    assert isinstance(error_from_response(502, b""), Unavailable)
    assert isinstance(error_from_response(418, b"[]"), BadRequest)


def test_error_fields_are_exposed() -> None:
    hint = error_from_response(
        421, error_response(421, "not_leader", leader="n2", leader_address="h:9").body
    )
    assert isinstance(hint, NotLeader)
    assert (hint.leader, hint.leader_address) == ("n2", "h:9")
    rng = error_from_response(
        400, error_response(400, "offset_out_of_range", start_offset=3, end_offset=9).body
    )
    assert isinstance(rng, OffsetOutOfRange)
    assert (rng.start_offset, rng.end_offset) == (3, 9)
    assert ServerTimeout.outcome_unknown and ConnectionFailed.outcome_unknown


def test_parse_bootstrap() -> None:
    assert parse_bootstrap("a:1, b:2,,a:1") == ["a:1", "b:2"]
    assert parse_bootstrap(["http://h:7101/"]) == ["h:7101"]
    assert parse_bootstrap("[::1]:7101") == ["[::1]:7101"]
    for bad in ("", "host", "host:port", ":80"):
        with pytest.raises(ValueError, match=r"bootstrap|HOST:PORT"):
            parse_bootstrap(bad)


def test_log_path_escapes_names() -> None:
    assert log_path("a b/c", "tablets", 2) == "/v1/logs/a%20b%2Fc/tablets/2"


async def test_requests_fail_over_between_bootstrap_nodes(scripted: Scripted) -> None:
    down = {"h1:1", "h2:2"}

    def handler(call: Call) -> Response | BaseException:
        if call.address in down:
            return ConnectionFailed("refused", address=call.address, sent=False)
        return scripted.metadata.answer(call) or error_response(404, "not_found")

    transport = FakeTransport(handler)
    async with AsyncClient(BOOTSTRAP, transport=transport) as client:
        info = await client.cluster()
        assert info.controller == "n1"
        assert [c.address for c in transport.calls] == ["h1:1", "h2:2", "h3:3"]
        await client.cluster()  # the node that answered is asked first next time
        assert transport.calls[-1].address == "h3:3"
        assert len(transport.calls) == 4


async def test_no_answering_node_is_cluster_unreachable() -> None:
    transport = FakeTransport(lambda c: ConnectionFailed("refused", address=c.address, sent=False))
    async with AsyncClient("a:1,b:2", transport=transport) as client:
        with pytest.raises(ClusterUnreachable, match=r"tried a:1, b:2"):
            await client.list_logs()


async def test_a_write_that_reached_a_node_is_not_sent_to_another() -> None:
    transport = FakeTransport(lambda c: ConnectionFailed("reset", address=c.address, sent=True))
    async with AsyncClient("a:1,b:2", transport=transport) as client:
        with pytest.raises(ConnectionFailed):
            await client.create_log("x")
        assert len(transport.calls) == 1


async def test_concurrent_refreshes_share_one_request(
    client: AsyncClient, scripted: Scripted
) -> None:
    results = await asyncio.gather(*(client.metadata.log("events", refresh=True) for _ in range(5)))
    assert {r.name for r in results} == {"events"}
    assert scripted.metadata.log_requests == 1
    assert client.metadata.leader_address("events", 0) == "h1:1"


async def test_admin_calls_retry_retriable_answers(scripted: Scripted) -> None:
    answers = [error_response(503, "no_leader"), json_response(200, {"logs": ["a", "b"]})]
    transport = FakeTransport(lambda _c: answers.pop(0))
    async with AsyncClient(BOOTSTRAP, transport=transport) as client:
        assert await client.list_logs() == ["a", "b"]


async def test_create_log_sends_settings_as_given(scripted: Scripted) -> None:
    seen: list[object] = []

    def handler(call: Call) -> Response:
        seen.append(call.json_body)
        return json_response(201, {"name": "x", "config": {}, "tablets": []})

    async with AsyncClient(BOOTSTRAP, transport=FakeTransport(handler)) as client:
        description = await client.create_log("x", tablets=2, retention_ms=None)
    assert seen == [{"name": "x", "tablets": 2, "retention_ms": None}]
    assert description.name == "x"


async def test_status_falls_back_when_the_endpoint_is_missing(scripted: Scripted) -> None:
    def handler(call: Call) -> Response:
        if call.path == "/v1/status":
            return error_response(404, "not_found")
        if call.path == "/v1/logs":
            return json_response(200, {"logs": ["events"]})
        answer = scripted.metadata.answer(call)
        assert answer is not None
        return answer

    async with AsyncClient(BOOTSTRAP, transport=FakeTransport(handler)) as client:
        status = await client.status()
    assert status.controller == "n1"
    assert [log.name for log in status.logs] == ["events"]
    assert [t.leader for t in status.logs[0].tablets] == ["n1", "n2", "n3"]


async def test_group_offsets_round_trip(scripted: Scripted) -> None:
    stored: dict[str, list[dict[str, object]]] = {}

    def handler(call: Call) -> Response:
        assert call.path == "/v1/groups/g%201/offsets"
        if call.method == "POST":
            stored["offsets"] = call.json_body["offsets"]
            return Response(204, b"")
        assert call.params == {"log": "events"}
        return json_response(200, {"group": "g 1", "offsets": stored["offsets"]})

    async with AsyncClient(BOOTSTRAP, transport=FakeTransport(handler)) as client:
        await client.commit("g 1", {("events", 0): 5, ("events", 2): 9})
        assert await client.committed("g 1", "events") == {("events", 0): 5, ("events", 2): 9}


def test_status_tolerates_unknown_lag_and_missing_fields() -> None:
    status = Status.parse(
        {
            "cluster": "c",
            "controller": None,
            "nodes": [],
            "logs": [
                {
                    "name": "e",
                    "tablets": [
                        {
                            "tablet": 1,
                            "leader": None,
                            "leader_epoch": None,
                            "replica_lag": {"n1": None, "n2": 4},
                        }
                    ],
                }
            ],
        }
    )
    tablet = status.logs[0].tablets[0]
    assert tablet.replica_lag == {"n1": None, "n2": 4}
    assert (tablet.leader, tablet.leader_epoch, tablet.end_offset) == (None, 0, None)
    assert status.to_dict()["logs"][0]["tablets"][0]["replica_lag"] == {"n1": None, "n2": 4}
