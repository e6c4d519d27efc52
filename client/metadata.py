"""Metadata cache: which nodes exist and which node leads each tablet.

Built from ``GET /v1/cluster`` (node id → address) and ``GET /v1/logs/{log}`` (leader per tablet).
Any node answers both, so the cache bootstraps from whichever bootstrap address answers first and
fails over to the others (and to every node it has learnt of) on connection errors. Callers
refresh a log's entry when a node says ``not_leader``/``no_leader``/``stale_epoch`` or a leader
cannot be reached; concurrent refreshes of one log share a single request.

Confined to the event loop of the client that owns it; not thread-safe.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from client.errors import ClusterUnreachable, ConnectionFailed
from client.models import ClusterInfo, LogDescription
from client.transport import Params, Response, Transport


def log_path(log: str, *rest: str | int) -> str:
    """``/v1/logs/{log}/...`` with the log name escaped (names may hold any character)."""
    tail = "".join(f"/{quote(str(part), safe='')}" for part in rest)
    return f"/v1/logs/{quote(log, safe='')}{tail}"


def parse_bootstrap(bootstrap: Sequence[str] | str) -> list[str]:
    """``"h1:p1,h2:p2"`` or a list of ``host:port`` → a list without blanks or duplicates.

    Raises ValueError for an empty list or an address without a port.
    """
    items = bootstrap.split(",") if isinstance(bootstrap, str) else list(bootstrap)
    addresses: list[str] = []
    for item in items:
        address = item.strip().removeprefix("http://").rstrip("/")
        if not address:
            continue
        host, sep, port = address.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"bootstrap address {item.strip()!r} is not HOST:PORT")
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise ValueError("give at least one bootstrap address (HOST:PORT)")
    return addresses


class Metadata:
    """Node addresses and tablet leaders, refreshed on demand. Not thread-safe (one loop)."""

    def __init__(
        self, transport: Transport, bootstrap: Sequence[str] | str, *, timeout_s: float
    ) -> None:
        self._transport = transport
        self._bootstrap = parse_bootstrap(bootstrap)
        self._timeout_s = timeout_s
        self._preferred: str | None = None  # the last address that answered
        self._nodes: dict[str, str] = {}  # node id → host:port
        self._logs: dict[str, LogDescription] = {}
        self._pending: dict[str, asyncio.Task[LogDescription]] = {}

    @property
    def bootstrap(self) -> list[str]:
        return list(self._bootstrap)

    @property
    def nodes(self) -> Mapping[str, str]:
        """Known node id → address (empty until the first cluster refresh)."""
        return dict(self._nodes)

    def candidates(self) -> list[str]:
        """Addresses to try, best first: the last one that answered, bootstrap, then the rest."""
        ordered: list[str] = []
        for address in [self._preferred, *self._bootstrap, *self._nodes.values()]:
            if address is not None and address not in ordered:
                ordered.append(address)
        return ordered

    async def request_any(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
        idempotent: bool = True,
        first: str | None = None,
    ) -> Response:
        """Send to the first node that answers (``first`` if given, then :meth:`candidates`).

        Moves on to the next node on a connection failure; after a request that reached a node
        and was not answered, moves on only when ``idempotent``. Returns any HTTP answer, error
        statuses included. Raises ClusterUnreachable when no node answered.
        """
        tried: list[str] = []
        last: ConnectionFailed | None = None
        order = self.candidates()
        if first is not None:
            order = [first, *(a for a in order if a != first)]
        for address in order:
            tried.append(address)
            try:
                response = await self._transport.request(
                    method,
                    address,
                    path,
                    params=params,
                    json_body=json_body,
                    headers=headers,
                    timeout_s=timeout_s or self._timeout_s,
                )
            except ConnectionFailed as exc:
                if exc.sent and not idempotent:
                    raise
                last = exc
                if self._preferred == address:
                    self._preferred = None
                continue
            self._preferred = address
            return response
        detail = f": {last.message}" if last is not None else ""
        raise ClusterUnreachable(f"no node answered (tried {', '.join(tried)}){detail}")

    async def refresh_cluster(self) -> ClusterInfo:
        """Re-read ``/v1/cluster`` and replace the node address map."""
        response = await self.request_any("GET", "/v1/cluster")
        info = ClusterInfo.parse(response.json_object())
        if info.nodes:
            self._nodes = {node.id: node.address for node in info.nodes}
        return info

    def cached(self, log: str) -> LogDescription | None:
        """The cached description of ``log`` without asking any node."""
        return self._logs.get(log)

    async def log(self, log: str, *, refresh: bool = False) -> LogDescription:
        """The description of ``log``: cached unless ``refresh``; concurrent refreshes share one.

        Raises NotFound when the log does not exist, ClusterUnreachable when no node answers.
        """
        if not refresh and log in self._logs:
            return self._logs[log]
        task = self._pending.get(log)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._fetch_log(log))
            self._pending[log] = task
            task.add_done_callback(lambda _t: self._pending.pop(log, None))
        # shield: one waiter giving up (timeout, cancel) must not cancel the others' refresh
        return await asyncio.shield(task)

    async def _fetch_log(self, log: str) -> LogDescription:
        response = await self.request_any("GET", log_path(log))
        description = LogDescription.parse(response.json_object())
        self._logs[log] = description
        leaders = {t.leader for t in description.tablets if t.leader is not None}
        if any(leader not in self._nodes for leader in leaders):
            await self.refresh_cluster()
        return description

    def leader_address(self, log: str, tablet: int) -> str | None:
        """Address of the cached leader of ``(log, tablet)``, or None if unknown."""
        description = self._logs.get(log)
        if description is None:
            return None
        try:
            leader = description.tablet(tablet).leader
        except IndexError:
            return None
        return self._nodes.get(leader) if leader is not None else None

    def note_leader(self, log: str, tablet: int, leader: str | None, address: str | None) -> None:
        """Record a leader hint from a ``not_leader`` answer until the next refresh."""
        if leader is not None and address is not None:
            self._nodes[leader] = address
        description = self._logs.get(log)
        if description is None or leader is None:
            return
        tablets = tuple(
            dataclasses.replace(t, leader=leader) if t.tablet == tablet else t
            for t in description.tablets
        )
        self._logs[log] = dataclasses.replace(description, tablets=tablets)

    def forget(self, log: str) -> None:
        """Drop the cached description (after the log was deleted or recreated)."""
        self._logs.pop(log, None)
