"""Run one node like ``python -m node``, plus diagnosis aids: on SIGUSR1 it writes where every
asyncio task is suspended to stderr (the node's log), so that a replica stuck in some ``await``
can be seen from outside; and it logs how a replica fetch loop ends if it ever ends other than
by ``close`` (with the traceback). Test-only; the node's code is wrapped, not changed.

Used by the fault-injection suite through ``Cluster.node_command``::

    python -m tests.faults.node_debug --config CONFIG.yaml --node ID
"""

from __future__ import annotations

import asyncio
import io
import logging
import signal
import sys
import traceback
from pathlib import Path

import node.__main__ as entry
from replication import follower

log = logging.getLogger("tests.faults.node_debug")

MARKER = "==== asyncio tasks"


def dump_tasks() -> None:
    out = io.StringIO()
    tasks = asyncio.all_tasks()
    print(f"{MARKER} ({len(tasks)}) ====", file=out)
    for task in sorted(tasks, key=lambda t: t.get_name()):
        print(f"--- {task.get_name()}", file=out)
        for line in await_chain(task.get_coro()):
            print(f"  {line}", file=out)
    print("==== end of tasks ====", file=out)
    sys.stderr.write(out.getvalue())
    sys.stderr.flush()


def await_chain(awaitable: object) -> list[str]:
    """Where a coroutine is suspended: every frame down its chain of awaits, innermost last."""
    lines: list[str] = []
    while awaitable is not None and len(lines) < 40:
        frame = getattr(awaitable, "cr_frame", None) or getattr(awaitable, "gi_frame", None)
        if frame is None:
            lines.append(f"awaiting {awaitable!r}"[:300])
            break
        lines.append(f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}")
        awaitable = getattr(awaitable, "cr_await", None) or getattr(awaitable, "gi_yieldfrom", None)
    return lines


_serve = entry._serve  # wrapped, not changed
_fetch_loop = follower.LeaderFetcher._run
_fetcher_close = follower.LeaderFetcher.close


async def _watched_fetch_loop(self: follower.LeaderFetcher) -> None:
    """The fetch loop, logging how it ends (it is meant to run until ``close``)."""
    try:
        await _fetch_loop(self)
    except BaseException as exc:
        if getattr(self, "_debug_closing", False) and isinstance(exc, asyncio.CancelledError):
            raise  # closed on purpose
        task = asyncio.current_task()
        cancelling = task.cancelling() if task is not None else -1
        log.warning(
            "fetch loop from %s ended by %r (closing: %s, task.cancelling()=%s):\n%s",
            self.leader_id,
            exc,
            getattr(self, "_debug_closing", False),
            cancelling,
            "".join(traceback.format_exception(exc)),
        )
        raise
    log.warning("fetch loop from %s returned", self.leader_id)


async def _watched_close(self: follower.LeaderFetcher) -> None:
    self._debug_closing = True  # type: ignore[attr-defined]
    await _fetcher_close(self)


follower.LeaderFetcher._run = _watched_fetch_loop  # type: ignore[method-assign]
follower.LeaderFetcher.close = _watched_close  # type: ignore[method-assign]


async def _serve_with_dump(config: object, node_id: str, data_dir: Path) -> int:
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, dump_tasks)
    return await _serve(config, node_id, data_dir)


entry._serve = _serve_with_dump

if __name__ == "__main__":
    sys.exit(entry.main(sys.argv[1:]))
