"""The controller's internal HTTP API through the real ControllerClient: auth, validation,
error mapping (NotController hint, CAS failures) and the happy paths."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from node.controller_api import controller_routes
from replication.auth import INTERNAL_TOKEN_HEADER, internal_token
from replication.commands import ClaimController
from replication.controller import Controller
from replication.controller_client import ControllerClient
from replication.errors import (
    AlreadyExists,
    CommandRejected,
    InvalidRequest,
    NotController,
    PeerUnreachable,
    StaleEpoch,
    UnknownLog,
)
from replication.log_settings import LogSettings
from replication.metadata import MetadataStore
from testkit.ports import free_port
from tests.replication.test_controller import TUNING, FakeClock, FakeHttp
from tests.replication.test_metadata_store import SECRET, FakeRaft, config, fake_store


@dataclass
class Api:
    address: str
    client: ControllerClient
    session: aiohttp.ClientSession
    controller: Controller
    store: MetadataStore
    raft: FakeRaft


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    store, raft = fake_store(config(tuning=TUNING))
    controller = Controller(
        store, "n1", config(tuning=TUNING).controller_settings(), FakeHttp().probe, FakeClock()
    )
    await controller.step()
    app = web.Application()
    app.add_routes(controller_routes(controller, SECRET, config().log_defaults))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    async with aiohttp.ClientSession() as session:
        yield Api(
            f"127.0.0.1:{server.port}",
            ControllerClient(session, SECRET),
            session,
            controller,
            store,
            raft,
        )
    await server.close()
    await controller.close()
    store.close()


async def _register_all(api: Api) -> None:
    for i in (1, 2, 3):
        await api.client.heartbeat(api.address, f"n{i}", 100 + i, f"127.0.0.1:710{i}")
    await api.store.wait_for(lambda v: all(n.alive for n in v.nodes.values()), timeout_s=2)


async def test_requests_without_the_token_are_refused(api: Api) -> None:
    url = f"http://{api.address}/internal/controller/heartbeat"
    body = json.dumps({"node": "n2", "incarnation": 1, "address": "x:1"})
    for headers in (
        {},
        {INTERNAL_TOKEN_HEADER: "nope"},
        {INTERNAL_TOKEN_HEADER: internal_token("another-secret")},
    ):
        async with api.session.post(url, data=body, headers=headers) as resp:
            assert resp.status == 401
            assert (await resp.json())["error"] == "unauthorized"
    assert api.raft.applied[1:] == [], "nothing but the claim reached the map"


@pytest.mark.parametrize(
    ("op", "body"),
    [
        ("heartbeat", b"not json"),
        ("heartbeat", b"[1, 2]"),
        ("heartbeat", b'{"node": "n2", "incarnation": -1, "address": "x:1"}'),
        ("heartbeat", b'{"node": "n2", "incarnation": true, "address": "x:1"}'),
        ("create_log", b'{"name": "x", "settings": {"tablets": "many"}}'),
        ("create_log", b'{"name": "x", "settings": {"colour": "red"}}'),
        (
            "alter_isr",
            b'{"log": "x", "tablet": 0, "leader": "n1", "leader_epoch": 0,'
            b' "version": 0, "isr": "n1"}',
        ),
        ("commit_offsets", b'{"group": "g", "offsets": [["x", 0]]}'),
    ],
)
async def test_malformed_bodies_are_bad_requests(api: Api, op: str, body: bytes) -> None:
    headers = {INTERNAL_TOKEN_HEADER: internal_token(SECRET)}
    async with api.session.post(
        f"http://{api.address}/internal/controller/{op}", data=body, headers=headers
    ) as resp:
        assert resp.status == 400
        reply = await resp.json()
        assert reply["error"] == "bad_request" and reply["message"]


async def test_a_node_that_is_not_controller_names_the_controller(api: Api) -> None:
    api.raft.leader = False
    await api.controller.step()
    with pytest.raises(NotController) as info:
        await api.client.heartbeat(api.address, "n2", 1, "x:1")
    assert info.value.controller is None
    await api.store.propose(ClaimController("n3", 5), 1)
    with pytest.raises(NotController) as info:
        await api.client.at(api.address).delete_log("x")
    assert info.value.controller == "n3"


async def test_create_alter_and_delete_through_http(api: Api) -> None:
    await _register_all(api)
    tablets = await api.client.at(api.address).create_log(
        "x", LogSettings(tablets=2, fsync="never")
    )
    assert [t.index for t in tablets] == [0, 1] and api.store.view.logs["x"].settings[
        "fsync"
    ] == "never"
    with pytest.raises(AlreadyExists):
        await api.client.at(api.address).create_log("x", LogSettings())
    t0 = tablets[0]
    assert t0.leader is not None
    changed = await api.client.at(api.address).alter_isr(
        "x", 0, t0.leader, t0.leader_epoch, t0.version, [t0.leader]
    )
    assert changed.isr == (t0.leader,) and changed.version == t0.version + 1
    with pytest.raises(StaleEpoch):
        await api.client.at(api.address).alter_isr(
            "x", 0, t0.leader, t0.leader_epoch + 5, changed.version, [t0.leader]
        )
    with pytest.raises(CommandRejected) as rejected:
        await api.client.at(api.address).elect_leader("x", 0, changed.leader_epoch, "n9")
    assert rejected.value.reason == "ineligible_replica"
    with pytest.raises(InvalidRequest):
        await api.client.at(api.address).create_log(
            "y", LogSettings(replication_factor=4, min_insync_replicas=1)
        )
    await api.client.at(api.address).commit_offsets("g", [["x", 0, 3]])
    assert api.store.view.consumer_offsets[("g", "x", 0)] == 3
    assert await api.client.at(api.address).report_unreachable("n2", "n3") == {"fenced": False}
    await api.client.at(api.address).delete_log("x")
    with pytest.raises(UnknownLog):
        await api.client.at(api.address).delete_log("x")


async def test_unreachable_controller_is_one_clear_error(api: Api) -> None:
    free = f"127.0.0.1:{free_port()}"
    with pytest.raises(PeerUnreachable) as info:
        await api.client.heartbeat(free, "n2", 1, "x:1")
    assert info.value.refused
    assert await api.client.probe(free, 0.5) is True
    assert await api.client.probe(api.address, 0.5) is False  # answers (404), so alive
