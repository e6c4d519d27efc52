"""Group commit: appends wait for the fsync that covers them, and concurrent appends share it.

With ``fsync: always`` an append is acknowledged only once ``log.flushed_offset`` has passed its
end offset. At most one flush runs per log: the first waiter starts one; every append that
arrives meanwhile is covered by the next flush, started as soon as the running one completes.
N concurrent appends therefore cost about two fsync rounds, not N.

A flush of up to ``inline_flush_bytes`` runs on the event-loop thread: an fsync of a few pages
takes ~0.2 ms here, while handing it to an executor thread and back costs several times that
(the GIL hand-off waits for the busy loop). Larger flushes go to the executor so that the loop
keeps appending and serving meanwhile.

With ``fsync: <ms>`` waiting returns at once (not durable yet) and a flush is scheduled at most
``ms`` later; with ``never`` waiting returns at once and nothing is scheduled (the OS writes back
dirty pages; ``close`` still flushes).

An fsync failure fails every waiter with FlushFailed and every later one too: after a failed
fsync Linux may have dropped the dirty pages, so the log must be closed and recovered.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass

from storage.errors import FlushFailed, LogClosed, LogTruncated, StorageError
from storage.flush import FlushTicket
from storage.log import TabletLog

log = logging.getLogger(__name__)

#: Flushes of at most this many new bytes fsync on the loop thread (see the module docstring).
INLINE_FLUSH_BYTES = 256 * 1024

#: Loop iterations a flush waits before starting (see GroupCommitter._run).
YIELDS_BEFORE_FLUSH = 3

DurableCallback = Callable[[StorageError | None], None]
"""Called with None once durable, or with the error that prevents it."""


@dataclass(slots=True)
class _Waiter:
    end_offset: int
    generation: int
    callback: DurableCallback


class GroupCommitter:
    """Durability waits for one TabletLog. Event-loop thread only (fsyncs run in ``executor``,
    the loop's default executor if None)."""

    def __init__(
        self,
        log: TabletLog,
        *,
        executor: Executor | None = None,
        inline_flush_bytes: int = INLINE_FLUSH_BYTES,
    ) -> None:
        self._log = log
        self._executor = executor
        self._inline_flush_bytes = inline_flush_bytes
        self._size_at_flush = log.size_bytes
        self._policy = log.config.fsync
        self._waiters: list[_Waiter] = []
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._again = False
        self._failed: FlushFailed | None = None
        self._closed = False
        self.flushes = 0  # flush rounds completed (each fsyncs every file that needed it)

    async def wait_durable(self, end_offset: int) -> None:
        """Return once offsets below ``end_offset`` are durable (per the policy, see module).

        Raises FlushFailed, LogTruncated (the log was truncated meanwhile: the append may be
        gone), LogClosed. Cancelling the wait does not cancel the flush.
        """
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self.on_durable(end_offset, lambda error: _settle(done, error))
        await done

    def on_durable(
        self, end_offset: int, callback: DurableCallback, *, eager: bool = False
    ) -> None:
        """Call ``callback(None)`` once offsets below ``end_offset`` are durable (per the
        policy), or ``callback(error)``. May call it right away, before returning.

        ``eager``: nothing is worth overlapping with this fsync (a follower that just appended
        what it fetched), so when no flush is running and the unflushed bytes are few enough
        to fsync on the loop thread, flush right now, before returning, instead of after a
        few loop iterations.
        """
        if self._closed:
            callback(LogClosed("the group committer is closed"))
        elif self._failed is not None:
            callback(self._failed)
        elif self._policy != "always":
            self._schedule()
            callback(None)
        elif self._log.flushed_offset >= end_offset:
            callback(None)
        else:
            assert end_offset <= self._log.end_offset, "waiting for offsets never appended"
            self._waiters.append(_Waiter(end_offset, self._log.generation, callback))
            if eager and self._fits_inline() and self._task is None and not self._log.is_closed:
                self._flush_inline()
                if self._failed is not None:
                    self._fail_all(self._failed)
                    return
                if not self._waiters:
                    return
            self._start()

    async def close(self) -> None:
        """Stop scheduling, let the running flush finish (and the one its waiters need), fail
        the waiters left with LogClosed. Does not close the log."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._task is not None:
            await asyncio.shield(self._task)
        self._fail_all(LogClosed("the group committer is closed"))

    def _schedule(self) -> None:
        if self._policy == "never" or self._timer is not None or self._closed:
            return
        assert isinstance(self._policy, int)
        self._timer = asyncio.get_running_loop().call_later(self._policy / 1000, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._again = True
        self._start()

    def _start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        # Let what the append woke up run first (a leader sends the new bytes to its followers)
        # so the fsync overlaps with replication instead of delaying it; appends arriving
        # meanwhile join this flush.
        for _ in range(YIELDS_BEFORE_FLUSH):
            await asyncio.sleep(0)
        try:
            while not self._log.is_closed:
                self._again = False
                if self._fits_inline():
                    self._flush_inline()
                else:
                    size = self._log.size_bytes
                    try:
                        ticket = self._log.begin_flush()
                        if ticket is not None:
                            await loop.run_in_executor(self._executor, ticket.run)
                            self._size_at_flush = size
                    except OSError as err:
                        self._on_flush_error(err)
                    else:
                        self._complete(ticket)
                if self._failed is not None or (not self._waiters and not self._again):
                    break
        finally:
            self._task = None
            if self._failed is not None:
                self._fail_all(self._failed)
            elif self._log.is_closed:
                self._settle_waiters(nothing_to_flush=True)

    def _fits_inline(self) -> bool:
        """Whether the bytes written since the last flush are few enough to fsync on the loop."""
        return self._log.size_bytes - self._size_at_flush <= self._inline_flush_bytes

    def _flush_inline(self) -> None:
        """One flush round on the loop thread (blocks it for the fsync)."""
        size = self._log.size_bytes
        try:
            ticket = self._log.begin_flush()
            if ticket is not None:
                ticket.run()
                self._size_at_flush = size
        except OSError as err:
            self._on_flush_error(err)
            return
        self._complete(ticket)

    def _complete(self, ticket: FlushTicket | None) -> None:
        """After a flush round (None: there was nothing to flush): settle what it covers."""
        if ticket is not None:
            self._log.complete_flush(ticket)
            self.flushes += 1
        self._settle_waiters(nothing_to_flush=ticket is None)

    def _on_flush_error(self, err: OSError) -> None:
        log.error("%s: flush failed: %s", self._log.directory, err)
        self._failed = FlushFailed(f"flush of {self._log.directory} failed: {err}")

    def _settle_waiters(self, *, nothing_to_flush: bool) -> None:
        flushed, generation = self._log.flushed_offset, self._log.generation
        waiting = []
        for waiter in self._waiters:
            if waiter.generation != generation:
                waiter.callback(LogTruncated("the log was truncated before the append was durable"))
            elif waiter.end_offset <= flushed:
                waiter.callback(None)
            elif nothing_to_flush:
                # The log has nothing left to flush yet this offset is not durable: it is gone.
                error: StorageError = LogClosed("the log was closed before the append was durable")
                if not self._log.is_closed:
                    error = LogTruncated("the append's offsets are no longer in the log")
                waiter.callback(error)
            else:
                waiting.append(waiter)
        self._waiters = waiting

    def _fail_all(self, error: StorageError) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(error)


def _settle(done: asyncio.Future[None], error: StorageError | None) -> None:
    if done.done():  # the waiter was cancelled
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)
