"""The benchmark's JetStream stream, from the client side: connect, create it, find its leader.

The NATS workloads (``bench.nats_peer``) and the failover trials (``bench.nats_failover``) share
one stream, ``STREAM`` (R3, file storage) on subjects ``bench.>``, written on ``SUBJECT``. The
servers themselves are ``bench.nats_cluster``'s. A connection belongs to the event loop that
opened it; nothing here is shared between loops or threads.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import nats
from nats.js.api import StorageType

STREAM = "BENCH"
SUBJECT = "bench.data"


async def _quiet(*_args: Any) -> None:
    """Connection callbacks that keep nats-py's reconnect chatter out of the table output."""


async def connect(servers: list[str], **kw: Any) -> Any:
    """A nats-py connection that reconnects quickly and quietly (the failover needs both)."""
    return await nats.connect(
        servers=servers,
        connect_timeout=2,
        reconnect_time_wait=0.1,
        max_reconnect_attempts=-1,
        error_cb=_quiet,
        disconnected_cb=_quiet,
        reconnected_cb=_quiet,
        closed_cb=_quiet,
        **kw,
    )


async def create_stream(js: Any, timeout: float = 30.0) -> None:
    """Create the R3 file stream, retrying while the JetStream meta group elects its leader."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            await js.add_stream(
                name=STREAM, subjects=["bench.>"], storage=StorageType.FILE, num_replicas=3
            )
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def stream_leader(js: Any, timeout: float = 15.0) -> str:
    """Name of the server leading the stream's Raft group (polls until one is elected)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            info = await js.stream_info(STREAM)
            if info.cluster is not None and info.cluster.leader:
                return str(info.cluster.leader)
        except Exception:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise TimeoutError("stream has no leader")
        await asyncio.sleep(0.1)
