"""Liveness rules: when the controller fences a node, probes it, or trusts it to lead again.

Times are seconds on the active controller's monotonic clock; a node's *silence* is the time
since its last heartbeat (or since this controller's claim, if it has not heard from it). A
late heartbeat is one overdue by ``late_s`` (two heartbeat intervals).

Pure functions; thread-safe.
"""

from __future__ import annotations


def is_stalled(since_last_check_s: float, late_s: float) -> bool:
    """Was the controller itself stalled (a paused process, a blocked loop) between two
    liveness rounds for longer than a late heartbeat? Then every node's silence is its own
    doing, and it must restart the timers rather than fence nodes whose heartbeats queued."""
    return since_last_check_s > 2 * late_s


def is_expired(silent_s: float, session_timeout_s: float) -> bool:
    """A node silent for longer than the session timeout is fenced."""
    return silent_s > session_timeout_s


def is_probe_due(
    silent_s: float, since_probe_s: float, late_s: float, session_timeout_s: float
) -> bool:
    """A node whose heartbeat is late (but not yet expired) is probed, at most once per
    ``late_s`` (``since_probe_s`` is infinite if it was never probed): a refused connection
    fences it long before the session timeout."""
    return late_s < silent_s <= session_timeout_s and since_probe_s > late_s


def is_stable(alive_for_s: float | None, silent_s: float, stable_s: float, late_s: float) -> bool:
    """May leadership move back to this node (its preferred tablets)? Only once it has been
    registered alive for ``stable_s`` under this controller (``alive_for_s``; None: not
    registered alive) and its heartbeat is not late: a node that just came back, or flaps,
    would cost clients a retry for nothing."""
    return alive_for_s is not None and alive_for_s >= stable_s and silent_s <= late_s
