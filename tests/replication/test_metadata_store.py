"""MetadataStore: the asyncio facade over Raft, tested against an in-process fake Raft that
applies commands on another thread (as pysyncobj does)."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from pysyncobj import FAIL_REASON

from node.config import ClusterConfig, NodeSpec, Tuning
from replication import model
from replication.command_base import Result
from replication.command_codec import Entry
from replication.commands import ClaimController
from replication.errors import MetadataTimeout, MetadataUnavailable
from replication.metadata import MetadataStore
from replication.model import ClusterView
from replication.raft_state import error_for

SECRET = "test-secret-123"


def config(nodes: int = 3, tuning: Tuning | None = None) -> ClusterConfig:
    specs = tuple(NodeSpec(f"n{i}", "127.0.0.1", 7100 + i, 7200 + i) for i in range(1, nodes + 1))
    return ClusterConfig("test", SECRET, specs, tuning=tuning or Tuning())


class FakeRaft:
    """A one-node 'Raft': applies on its own thread, with knobs to misbehave."""

    def __init__(
        self,
        cfg: ClusterConfig,
        on_view: Callable[[ClusterView], None],
        on_ready: Callable[[], None],
    ) -> None:
        self.state = model.initial_state(cfg.name, {n.id: n.api_address for n in cfg.nodes})
        self.on_view, self.on_ready = on_view, on_ready
        self.index = 0
        self.leader = True
        self.term = 1
        self.ready = True
        self.drop_callbacks = False
        self.fail_reason: int | None = None
        self.after_apply: Callable[[], None] | None = None  # runs before the callback
        self.applied: list[Entry] = []
        self.thread_names: set[str] = set()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="fake-raft")

    def submit(self, entry: Entry, callback: Callable[[Any, int], None]) -> None:
        def run() -> None:
            self.thread_names.add(threading.current_thread().name)
            if self.fail_reason is not None:
                callback(None, self.fail_reason)
                return
            self.index += 1
            result = dataclasses.replace(model.apply_entry(self.state, entry), index=self.index)
            self.applied.append(entry)
            self.on_view(model.to_view(self.state, self.index))
            if self.after_apply is not None:
                self.after_apply()
            if not self.drop_callbacks:
                callback(result, FAIL_REASON.SUCCESS)

        self._pool.submit(run)

    def is_raft_leader(self) -> bool:
        return self.leader

    def raft_leader_id(self) -> str | None:
        return "n1" if self.leader else None

    def raft_term(self) -> int:
        return self.term

    def is_ready(self) -> bool:
        return self.ready

    def status(self) -> dict[str, Any]:
        return {"raft_term": self.term}

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def fake_store(cfg: ClusterConfig | None = None) -> tuple[MetadataStore, FakeRaft]:
    cfg = cfg or config()
    fakes: list[FakeRaft] = []

    def factory(on_view: Callable[[ClusterView], None], on_ready: Callable[[], None]) -> FakeRaft:
        fakes.append(FakeRaft(cfg, on_view, on_ready))
        return fakes[0]

    store = MetadataStore(
        cfg.raft_settings(), "n1", Path("/nonexistent"), asyncio.get_running_loop(), backend=factory
    )
    return store, fakes[0]


async def test_propose_returns_the_result_after_the_view_shows_it() -> None:
    store, raft = fake_store()
    seen: list[tuple[int, str]] = []
    store.subscribe(lambda v: seen.append((v.applied_index, threading.current_thread().name)))
    assert store.view.controller is None and set(store.view.nodes) == {"n1", "n2", "n3"}
    result = await store.propose(ClaimController("n1", 1), timeout_s=2)
    assert result == Result(ok=True, changed=True, index=1)
    assert store.view.controller == "n1" and store.view.applied_index == 1
    assert seen == [(1, threading.current_thread().name)], "subscribers run on the loop thread"
    assert raft.thread_names == {"fake-raft_0"}
    rejected = await store.propose(ClaimController("n2", 1), timeout_s=2)
    assert rejected.ok is False and rejected.error == "stale_term"
    store.close()


async def test_lost_callback_times_out_as_unknown_outcome() -> None:
    store, raft = fake_store()
    raft.drop_callbacks = True
    with pytest.raises(MetadataTimeout):
        await store.propose(ClaimController("n1", 1), timeout_s=0.2)
    store.close()


@pytest.mark.parametrize(
    ("reason", "error"),
    [
        (FAIL_REASON.MISSING_LEADER, MetadataUnavailable),
        (FAIL_REASON.QUEUE_FULL, MetadataUnavailable),
        (FAIL_REASON.DISCARDED, MetadataUnavailable),
        (FAIL_REASON.NOT_LEADER, MetadataUnavailable),
        (FAIL_REASON.REQUEST_DENIED, MetadataUnavailable),
        (FAIL_REASON.LEADER_CHANGED, MetadataTimeout),
        (FAIL_REASON.UNKNOWN_OUTCOME, MetadataTimeout),
        (99, MetadataTimeout),
    ],
)
async def test_failure_reasons_map_to_errors(reason: int, error: type[Exception]) -> None:
    assert error_for(FAIL_REASON.SUCCESS) is None
    assert isinstance(error_for(reason), error)
    store, raft = fake_store()
    raft.fail_reason = reason
    with pytest.raises(error):
        await store.propose(ClaimController("n1", 1), timeout_s=1)
    store.close()


async def test_callback_from_the_loop_thread_is_handled() -> None:
    """pysyncobj calls back on the caller's thread when its queue is full."""
    store, raft = fake_store()

    def submit_inline(entry: Entry, callback: Callable[[Any, int], None]) -> None:
        callback(None, FAIL_REASON.QUEUE_FULL)

    raft.submit = submit_inline  # type: ignore[method-assign]
    with pytest.raises(MetadataUnavailable):
        await store.propose(ClaimController("n1", 1), timeout_s=1)
    store.close()


async def test_wait_for_wakes_on_view_changes_and_on_ready() -> None:
    store, raft = fake_store()
    waiter = asyncio.ensure_future(store.wait_for(lambda v: v.controller == "n1", timeout_s=2))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    await store.propose(ClaimController("n1", 1), timeout_s=2)
    assert (await waiter).controller == "n1"
    with pytest.raises(TimeoutError):
        await store.wait_for(lambda v: v.controller == "n2", timeout_s=0.05)

    raft.ready = False
    ready = asyncio.ensure_future(store.wait_for(lambda _v: store.ready, timeout_s=2))
    await asyncio.sleep(0.01)
    raft.ready = True
    raft.on_ready()  # as pysyncobj's onReady would, from its thread
    await ready
    store.close()


async def test_close_fails_waiters_and_later_proposals() -> None:
    store, _ = fake_store()
    waiter = asyncio.ensure_future(store.wait_for(lambda v: v.controller == "zz", timeout_s=5))
    await asyncio.sleep(0.01)
    store.close()
    with pytest.raises(MetadataUnavailable):
        await waiter
    with pytest.raises(MetadataUnavailable):
        await store.propose(ClaimController("n1", 1), timeout_s=1)


async def test_a_failing_subscriber_does_not_starve_the_others() -> None:
    store, _ = fake_store()
    got: list[int] = []

    def broken(_view: ClusterView) -> None:
        raise RuntimeError("subscriber bug")

    store.subscribe(broken)
    store.subscribe(lambda v: got.append(v.applied_index))
    await store.propose(ClaimController("n1", 1), timeout_s=2)
    assert got == [1]
    store.close()
