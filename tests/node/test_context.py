"""NodeContext.active_controller: one way to call the controller, local or remote."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest

from node.context import NodeContext
from replication.controller_client import ControllerClient, RemoteController
from replication.errors import NotController


def context(*, active: bool, controller: str | None, client: ControllerClient) -> NodeContext:
    nodes = {n: SimpleNamespace(address=f"127.0.0.1:710{n[1]}") for n in ("n1", "n2")}
    view = SimpleNamespace(controller=controller, nodes=nodes)
    fake: Any = SimpleNamespace
    return NodeContext(
        config=fake(),
        spec=fake(id="n1"),
        incarnation=1,
        store=fake(view=view),
        replicas=fake(),
        controller=fake(is_active=active),
        controller_client=client,
        peer=fake(),
        session=fake(),
        metrics=fake(),
    )


async def test_the_local_controller_while_active_else_the_named_node() -> None:
    async with aiohttp.ClientSession() as session:
        client = ControllerClient(session, "secret-secret")
        local = context(active=True, controller="n1", client=client)
        assert local.active_controller() is local.controller
        remote = context(active=False, controller="n2", client=client).active_controller()
        assert isinstance(remote, RemoteController) and remote.address == "127.0.0.1:7102"


@pytest.mark.parametrize(("named", "hint"), [(None, None), ("n1", None), ("n9", "n9")])
async def test_no_known_controller_elsewhere_is_not_controller(
    named: str | None, hint: str | None
) -> None:
    async with aiohttp.ClientSession() as session:
        ctx = context(active=False, controller=named, client=ControllerClient(session, "s" * 8))
        with pytest.raises(NotController) as info:
            ctx.active_controller()
    assert info.value.controller == hint
