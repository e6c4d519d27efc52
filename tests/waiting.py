"""The one deadline loop every test uses instead of sleeping and hoping."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T | None], timeout_s: float, message: str, interval_s: float = 0.05
) -> T:
    """Call ``predicate`` until it returns something truthy; return that, or fail with ``message``.

    Exceptions from the predicate count as "not yet" (the last one is reported on timeout).
    """
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
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise AssertionError(f"timed out after {timeout_s:.1f} s: {message}{detail}")
        time.sleep(interval_s)
