"""The one mapping of failed calls to other nodes: which failures count as "refused"."""

from __future__ import annotations

import socket

import aiohttp

from replication.errors import PeerError
from replication.peer_errors import CONNECTION_ERRORS, peer_error, peer_unreachable


def _free_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


async def test_a_refused_connection_is_the_only_refusal() -> None:
    address = _free_address()
    async with aiohttp.ClientSession() as session:
        try:
            await session.get(f"http://{address}/", timeout=aiohttp.ClientTimeout(total=1))
        except CONNECTION_ERRORS as exc:
            refused = peer_unreachable(address, exc, 1.0)
    assert refused.refused and refused.address == address
    timed_out = peer_unreachable(address, TimeoutError(), 2.5)
    assert not timed_out.refused and "no answer within 2.5 s" in str(timed_out)
    reset = peer_unreachable(address, ConnectionResetError(), 1.0)
    assert not reset.refused and "ConnectionResetError" in str(reset)


def test_error_replies_keep_their_code_or_show_the_body() -> None:
    error = peer_error("a:1", 409, b'{"error": "stale_epoch", "message": "old"}')
    assert isinstance(error, PeerError)
    assert (error.status, error.error) == (409, "stale_epoch") and "old" in str(error)
    junk = peer_error("a:1", 502, b"<html>bad gateway</html>")
    assert junk.error == "http_error" and "bad gateway" in str(junk)
    assert peer_error("a:1", 500, b"[1, 2]").error == "http_error"
