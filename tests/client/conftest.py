"""Fixtures of the client tests: a scripted transport wired to an AsyncClient."""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from client.async_client import AsyncClient
from client.transport import Response
from testkit.cluster import FAST_TUNING, Cluster
from tests.client.fakes import Acknowledger, Call, FakeTransport, MetadataAnswers

BOOTSTRAP = ["h1:1", "h2:2", "h3:3"]
__all__ = [
    "BOOTSTRAP",
    "FAST_TUNING",
    "Scripted",
    "bootstrap_of",
    "running_cluster",
    "skip_unless_server_importable",
]


class Scripted:
    """A FakeTransport whose handler answers metadata, then defers to ``data`` (a test's)."""

    def __init__(self) -> None:
        self.metadata = MetadataAnswers()
        self.acks = Acknowledger()
        self.data: Callable[
            [Call], Response | BaseException | Awaitable[Response | BaseException]
        ] = self.acks.answer
        self.transport = FakeTransport(self._handle)

    def _handle(self, call: Call) -> Response | BaseException | Awaitable[Response | BaseException]:
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


# ---------------------------------------------------------------------------------------------
# a real local cluster (tests marked ``cluster``), on the shared harness


def _server_importable() -> str | None:
    """Why the node cannot run yet (None when it can): cluster tests skip instead of failing
    while the server is being written."""
    try:
        importlib.import_module("node.server")
    except ImportError as exc:
        return f"the node server is not importable yet: {exc}"
    return None


def skip_unless_server_importable() -> None:
    reason = _server_importable()
    if reason:
        pytest.skip(reason)


@contextlib.contextmanager
def running_cluster(base_dir: Path, size: int = 3, **kwargs: Any) -> Iterator[Cluster]:
    """A started, ready cluster; on a start failure, fail with the nodes' log tails."""
    skip_unless_server_importable()
    with Cluster.running(base_dir, size, ready_timeout_s=60, **kwargs) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One 3-node cluster for a module's tests that do not inject faults."""
    with running_cluster(tmp_path_factory.mktemp("cluster")) as cluster:
        yield cluster


def bootstrap_of(cluster: Cluster) -> str:
    return ",".join(f"{n.host}:{n.api_port}" for n in cluster.nodes.values())
