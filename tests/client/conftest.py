"""Fixtures of the client tests: a scripted transport wired to an AsyncClient."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from client.async_client import AsyncClient
from client.transport import Response
from tests.client.fakes import Acknowledger, Call, FakeTransport, MetadataAnswers

BOOTSTRAP = ["h1:1", "h2:2", "h3:3"]


class Scripted:
    """A FakeTransport whose handler answers metadata, then defers to ``data`` (a test's)."""

    def __init__(self) -> None:
        self.metadata = MetadataAnswers()
        self.acks = Acknowledger()
        self.data: Callable[
            [Call], Response | BaseException | Awaitable[Response | BaseException]
        ] = self.acks.answer
        self.transport = FakeTransport(self._handle)

    def _handle(
        self, call: Call
    ) -> Response | BaseException | Awaitable[Response | BaseException]:
        answer = self.metadata.answer(call)
        if answer is not None:
            return answer
        return self.data(call)


@pytest.fixture
def scripted() -> Scripted:
    return Scripted()


@pytest.fixture
async def client(scripted: Scripted) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(BOOTSTRAP, timeout_s=2, transport=scripted.transport) as c:
        yield c
