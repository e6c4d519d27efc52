"""The blocking Client: the same calls through a private loop thread, from many threads."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from client.errors import NotFound
from client.sync import Client
from tests.client.conftest import BOOTSTRAP, Scripted


@pytest.fixture
def sync_client(scripted: Scripted) -> Iterator[Client]:
    with Client(BOOTSTRAP, timeout_s=2, transport=scripted.transport) as client:
        yield client


def test_admin_calls_block_and_return(sync_client: Client) -> None:
    description = sync_client.describe_log("events")
    assert description.tablet_count == 3
    assert sync_client.cluster().controller == "n1"
    with pytest.raises(NotFound):
        sync_client.describe_log("missing")


def test_sends_from_many_threads_are_all_delivered_in_order_per_thread(
    sync_client: Client, scripted: Scripted
) -> None:
    producer = sync_client.producer("events", linger_ms=1)
    results: dict[int, list[tuple[int, int]]] = {}

    def worker(tablet: int) -> None:
        futures = [producer.send(f"{tablet}-{i}", tablet=tablet) for i in range(50)]
        results[tablet] = [tuple(f.result(timeout=5)) for f in futures]  # type: ignore[misc]

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    producer.close()
    for tablet in range(3):
        assert results[tablet] == [(tablet, i) for i in range(50)]
    assert producer.stats.records_sent == 150


def test_blocking_calls_from_the_loop_thread_are_refused(sync_client: Client) -> None:
    async def inside() -> None:
        sync_client.list_logs()

    with pytest.raises(RuntimeError, match="loop thread"):
        sync_client.run(inside())


def test_close_is_idempotent(scripted: Scripted) -> None:
    client = Client(BOOTSTRAP, transport=scripted.transport)
    client.close()
    client.close()
    assert scripted.transport.closed
