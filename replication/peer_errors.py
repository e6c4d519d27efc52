"""What a failed call to another node's HTTP API stands for: the one mapping every caller uses.

A call either gets no (complete) answer or an error answer, and callers must tell "maybe
delivered" from "answered no":

* :func:`peer_unreachable` turns any of :data:`CONNECTION_ERRORS` into :class:`PeerUnreachable`;
  ``refused`` is True only for an actively refused connection (nothing listens there, so
  nothing was delivered), otherwise the request may have been delivered;
* :func:`peer_error` turns an error reply (``{"error", "message"}`` JSON, or anything else)
  into :class:`PeerError`, for callers that have no more specific class for its code.

Used by ``replication.peer_client``, ``replication.controller_client`` and the node's
forwarding. Pure functions; thread-safe.
"""

from __future__ import annotations

import json

import aiohttp

from replication.errors import PeerError, PeerUnreachable

__all__ = ["CONNECTION_ERRORS", "peer_error", "peer_unreachable"]

CONNECTION_ERRORS: tuple[type[Exception], ...] = (
    aiohttp.ClientError,
    ConnectionError,
    TimeoutError,
)
"""What an aiohttp call to another node raises when no complete answer arrives (refused,
reset, disconnected, truncated, timed out)."""


def peer_unreachable(address: str, exc: Exception, timeout_s: float) -> PeerUnreachable:
    """The PeerUnreachable that ``exc`` (one of :data:`CONNECTION_ERRORS`, raised by a call
    to ``address`` bounded by ``timeout_s``) stands for."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        refused = isinstance(exc.os_error, ConnectionRefusedError)
        return PeerUnreachable(address, str(exc.os_error), refused=refused)
    if isinstance(exc, TimeoutError):
        return PeerUnreachable(address, f"no answer within {timeout_s:.1f} s", refused=False)
    return PeerUnreachable(address, str(exc) or type(exc).__name__, refused=False)


def peer_error(address: str, status: int, body: bytes) -> PeerError:
    """The PeerError of an error reply from ``address``: its JSON ``error`` and ``message``,
    else ``http_error`` with the start of the body."""
    try:
        parsed = json.loads(body)
        return PeerError(address, status, str(parsed["error"]), str(parsed.get("message", "")))
    except (ValueError, TypeError, KeyError, AttributeError):
        return PeerError(address, status, "http_error", body[:200].decode("utf-8", "replace"))
