"""The one deadline loop tests and benchmarks use instead of sleeping and hoping.

``wait_until`` polls from the calling thread (sleeping between polls); ``wait_until_async``
polls from a coroutine (yielding to its event loop between polls), for conditions that other
tasks of the same loop make true. Exceptions raised by the predicate count as "not yet" (the
last one is quoted on timeout); a predicate that has seen the test fail for good ends the wait
at once with ``pytest.fail`` (its exception is a BaseException, not an Exception). On timeout
both raise AssertionError naming what was waited for.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T | None], timeout_s: float, message: str, interval_s: float = 0.05
) -> T:
    """Call ``predicate`` until it returns something truthy; return that, or fail with
    ``message`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last_error: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # "not yet"; reported below
            last_error = exc
        if time.monotonic() >= deadline:
            raise _timed_out(timeout_s, message, last_error)
        time.sleep(interval_s)


async def wait_until_async(
    predicate: Callable[[], T | None], timeout_s: float, message: str, interval_s: float = 0.001
) -> T:
    """``wait_until`` for a coroutine: sleeps with ``asyncio.sleep`` so the loop's other tasks
    run between polls (hence the short default interval: the wait costs no thread)."""
    deadline = time.monotonic() + timeout_s
    last_error: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # "not yet"; reported below
            last_error = exc
        if time.monotonic() >= deadline:
            raise _timed_out(timeout_s, message, last_error)
        await asyncio.sleep(interval_s)


def _timed_out(timeout_s: float, message: str, last_error: BaseException | None) -> AssertionError:
    detail = f" (last error: {last_error!r})" if last_error else ""
    return AssertionError(f"timed out after {timeout_s:.1f} s: {message}{detail}")
