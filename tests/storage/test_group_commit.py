"""GroupCommitter: shared fsyncs, acknowledgement after the covering fsync, policies, errors.

fsyncs are observed and held through the ``storage.flush.sync_data`` seam, never by timing.
Most tests hold an fsync while the loop goes on, so they run every flush in the executor
(``inline_flush_bytes=0``); the inline path has its own test.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator

import pytest

from storage import flush
from storage.errors import FlushFailed, LogClosed, LogTruncated, StorageError
from storage.group_commit import GroupCommitter
from storage.log import TabletLog
from testkit.waiting import wait_until_async
from tests.storage.conftest import make_batch

OpenLog = Callable[..., TabletLog]


class SyncGate:
    """Replaces fdatasync: counts calls and blocks them until ``release``."""

    def __init__(self) -> None:
        self.calls = 0
        self.entered = threading.Event()
        self.open = threading.Event()
        self.fail: OSError | None = None
        self._lock = threading.Lock()

    def __call__(self, fd: int) -> None:
        with self._lock:
            self.calls += 1
        self.entered.set()
        assert self.open.wait(10), "sync gate never released"
        if self.fail is not None:
            raise self.fail

    def release(self) -> None:
        self.open.set()


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[SyncGate]:
    g = SyncGate()
    monkeypatch.setattr(flush, "sync_data", g)
    yield g
    g.release()


async def test_concurrent_appends_share_fsyncs(open_log: OpenLog, gate: SyncGate) -> None:
    log = open_log(fsync="always", segment_bytes=1 << 20)
    committer = GroupCommitter(log, inline_flush_bytes=0)
    appenders = 50
    acked: list[int] = []

    async def append(i: int) -> None:
        result = log.append_as_leader(make_batch(2, tag=i), 0)
        await committer.wait_durable(result.end_offset)
        assert log.flushed_offset >= result.end_offset  # acknowledged only once durable
        acked.append(i)

    first = asyncio.ensure_future(append(0))
    # The first append's flush is now running (held in fsync): the others arrive meanwhile.
    await asyncio.get_running_loop().run_in_executor(None, gate.entered.wait, 5)
    others = [asyncio.ensure_future(append(i)) for i in range(1, appenders)]
    await wait_until_async(lambda: log.end_offset == 2 * appenders, 5, "all appends")
    assert acked == []  # nobody is acknowledged while the covering fsync is held
    gate.release()
    await asyncio.gather(first, *others)
    assert sorted(acked) == list(range(appenders))
    # One flush for the first append, one shared by the 49 that arrived during it.
    assert committer.flushes == 2 and log.stats.flushes == 2
    assert gate.calls == 2  # one data file each (no roll, directory already durable)
    assert log.flushed_offset == log.end_offset
    await committer.close()


async def test_appends_queued_before_the_flush_starts_share_one(
    open_log: OpenLog, gate: SyncGate
) -> None:
    log = open_log(fsync="always")
    committer = GroupCommitter(log, inline_flush_bytes=0)
    gate.release()

    async def append(i: int) -> None:
        await committer.wait_durable(log.append_as_leader(make_batch(1, tag=i), 0).end_offset)

    await asyncio.gather(*(append(i) for i in range(20)))
    assert committer.flushes == 1 and log.flushed_offset == 20
    await committer.close()


async def test_append_is_not_acknowledged_before_its_fsync(
    open_log: OpenLog, gate: SyncGate
) -> None:
    log = open_log(fsync="always")
    committer = GroupCommitter(log, inline_flush_bytes=0)
    result = log.append_as_leader(make_batch(), 0)
    waiting = asyncio.ensure_future(committer.wait_durable(result.end_offset))
    await asyncio.get_running_loop().run_in_executor(None, gate.entered.wait, 5)
    await asyncio.sleep(0.01)
    assert not waiting.done() and log.flushed_offset == 0
    gate.release()
    await waiting
    assert log.flushed_offset == result.end_offset
    await committer.wait_durable(result.end_offset)  # already durable: immediate
    await committer.close()


async def test_callback_form(open_log: OpenLog, gate: SyncGate) -> None:
    log = open_log(fsync="always")
    committer = GroupCommitter(log, inline_flush_bytes=0)
    outcomes: list[StorageError | None] = []
    end = log.append_as_leader(make_batch(), 0).end_offset
    committer.on_durable(end, outcomes.append)
    assert outcomes == []
    gate.release()
    await wait_until_async(lambda: bool(outcomes), 5, "the callback")
    assert outcomes == [None]
    await committer.close()


async def test_interval_policy_returns_at_once_and_flushes_soon(open_log: OpenLog) -> None:
    log = open_log(fsync=20)
    committer = GroupCommitter(log, inline_flush_bytes=0)
    end = log.append_as_leader(make_batch(), 0).end_offset
    await committer.wait_durable(end)
    assert log.flushed_offset == 0  # returned before any fsync
    await wait_until_async(lambda: log.flushed_offset == end, 5, "the scheduled flush")
    assert committer.flushes == 1
    await committer.close()


async def test_never_policy_does_not_flush(open_log: OpenLog, gate: SyncGate) -> None:
    log = open_log(fsync="never")
    committer = GroupCommitter(log, inline_flush_bytes=0)
    await committer.wait_durable(log.append_as_leader(make_batch(), 0).end_offset)
    await asyncio.sleep(0.02)
    assert committer.flushes == 0 and gate.calls == 0
    await committer.close()


async def test_fsync_failure_fails_every_waiter_now_and_later(
    open_log: OpenLog, gate: SyncGate
) -> None:
    log = open_log(fsync="always")
    committer = GroupCommitter(log, inline_flush_bytes=0)
    gate.fail = OSError(5, "EIO")
    gate.release()
    end = log.append_as_leader(make_batch(), 0).end_offset
    with pytest.raises(FlushFailed):
        await committer.wait_durable(end)
    assert log.flushed_offset == 0
    with pytest.raises(FlushFailed):
        await committer.wait_durable(log.append_as_leader(make_batch(), 0).end_offset)
    await committer.close()


async def test_truncation_while_waiting_fails_the_waiter(open_log: OpenLog, gate: SyncGate) -> None:
    log = open_log(fsync="always")
    committer = GroupCommitter(log, inline_flush_bytes=0)
    log.append_as_leader(make_batch(), 0)
    first = asyncio.ensure_future(committer.wait_durable(3))
    await asyncio.get_running_loop().run_in_executor(None, gate.entered.wait, 5)
    end = log.append_as_leader(make_batch(), 0).end_offset
    second = asyncio.ensure_future(committer.wait_durable(end))
    await asyncio.sleep(0)
    log.truncate_to(3)
    gate.release()
    with pytest.raises(LogTruncated):
        await second
    with pytest.raises(LogTruncated):
        await first  # taken before the truncation: the ticket does not count
    await committer.close()


async def test_close_awaits_the_flush_in_flight(open_log: OpenLog, gate: SyncGate) -> None:
    log = open_log(fsync="always")
    committer = GroupCommitter(log, inline_flush_bytes=0)
    end = log.append_as_leader(make_batch(), 0).end_offset
    waiting = asyncio.ensure_future(committer.wait_durable(end))
    await asyncio.get_running_loop().run_in_executor(None, gate.entered.wait, 5)
    closing = asyncio.ensure_future(committer.close())
    await asyncio.sleep(0.01)
    assert not closing.done()
    gate.release()
    await closing
    await waiting  # its fsync completed: durable, not failed
    with pytest.raises(LogClosed):
        await committer.wait_durable(end + 1)


class NoExecutor:
    """An executor that must not be used: small flushes run on the loop thread."""

    def submit(self, *_args: object, **_kwargs: object) -> None:
        raise AssertionError("a small flush went to the executor")


async def test_small_flushes_run_inline_and_large_ones_in_the_executor(
    open_log: OpenLog,
) -> None:
    log = open_log(fsync="always", segment_bytes=1 << 24)
    inline = GroupCommitter(log, executor=NoExecutor(), inline_flush_bytes=64 * 1024)  # type: ignore[arg-type]
    result = log.append_as_leader(make_batch(3), 0)
    await inline.wait_durable(result.end_offset)
    assert log.flushed_offset == result.end_offset
    await inline.close()
    threaded = GroupCommitter(log, inline_flush_bytes=1024)
    big = log.append_as_leader(make_batch(50, value_size=1000), 0)
    await threaded.wait_durable(big.end_offset)
    assert log.flushed_offset == big.end_offset
    assert threaded.flushes == 1


async def test_eager_waits_flush_small_appends_before_returning(open_log: OpenLog) -> None:
    log = open_log(fsync="always", segment_bytes=1 << 24)
    committer = GroupCommitter(log, inline_flush_bytes=64 * 1024)
    seen: list[StorageError | None] = []
    small = log.append_as_leader(make_batch(3), 0)
    committer.on_durable(small.end_offset, seen.append, eager=True)
    assert seen == [None] and log.flushed_offset == small.end_offset  # before any await
    big = log.append_as_leader(make_batch(100, value_size=1000), 0)  # over the inline limit
    committer.on_durable(big.end_offset, seen.append, eager=True)
    assert seen == [None]  # left to the executor, as without eager
    await wait_until_async(lambda: len(seen) == 2, 5, "the large flush")
    assert seen == [None, None] and log.flushed_offset == big.end_offset
    await committer.close()


async def test_eager_flush_failure_fails_the_waiter(
    open_log: OpenLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = open_log(fsync="always")
    committer = GroupCommitter(log)

    def broken(fd: int) -> None:
        raise OSError(5, "I/O error")

    monkeypatch.setattr(flush, "sync_data", broken)
    seen: list[StorageError | None] = []
    result = log.append_as_leader(make_batch(3), 0)
    committer.on_durable(result.end_offset, seen.append, eager=True)
    assert len(seen) == 1 and isinstance(seen[0], FlushFailed)
    assert log.flushed_offset < result.end_offset
    await committer.close()
