"""``AsyncClient``: the asyncio entry point (admin calls, producers, consumers, group offsets).

One client holds one HTTP session (connections are pooled and reused per node) and one metadata
cache shared by every producer and consumer made from it. Admin requests go to any node (each
serves the whole API); they fail over between nodes on connection errors and retry retriable
answers (``no_leader`` while the metadata leader is being elected, say) until ``timeout_s``.

Use from one event loop; not thread-safe. The blocking ``client.sync.Client`` runs one of these
on a private loop thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from client.consumer import Consumer, Reset, Start
from client.errors import ClientError, NotFound, ProtocolError
from client.metadata import Metadata, log_path
from client.models import ClusterInfo, LogDescription, LogStatus, ProducerIdentity, Status
from client.producer import DEFAULT_MAX_BATCH_BYTES, Acks, Producer
from client.transport import HttpTransport, Response, Transport

TabletKey = tuple[str, int]
"""(log, tablet): the key of committed offsets."""


class AsyncClient:
    """Talks to a tabletlog cluster from asyncio code. Not thread-safe (one event loop).

    ``bootstrap`` is one or more ``host:port`` API addresses (a list or a comma-separated
    string); any node will do. ``timeout_s`` bounds each admin call and each request.
    """

    def __init__(
        self,
        bootstrap: Sequence[str] | str,
        *,
        timeout_s: float = 10.0,
        transport: Transport | None = None,
    ) -> None:
        self._transport: Transport = transport or HttpTransport()
        self._timeout_s = timeout_s
        self.metadata = Metadata(self._transport, bootstrap, timeout_s=timeout_s)

    @property
    def transport(self) -> Transport:
        return self._transport

    @property
    def timeout_s(self) -> float:
        return self._timeout_s

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close pooled connections. Producers made from this client must be closed first."""
        await self._transport.close()

    # -----------------------------------------------------------------------------------------
    # admin

    async def cluster(self) -> ClusterInfo:
        """``GET /v1/cluster``: the nodes, their liveness and the metadata controller."""
        answer = await self._call("GET", "/v1/cluster")
        return ClusterInfo.parse(answer.json_object())

    async def create_log(self, name: str, **settings: Any) -> LogDescription:
        """Create a log; ``settings`` are the optional fields of ``POST /v1/logs``.

        Settings are sent as given: ``retention_ms=None`` means keep forever (JSON null); leave a
        setting out to take the cluster's default. Raises AlreadyExists, BadRequest (a bad
        setting), NotEnoughReplicas (too few nodes).
        """
        body = {"name": name, **settings}
        answer = await self._call("POST", "/v1/logs", json_body=body, idempotent=False)
        self.metadata.forget(name)
        return LogDescription.parse(answer.json_object())

    async def list_logs(self) -> list[str]:
        """Names of every log."""
        answer = (await self._call("GET", "/v1/logs")).json_object()
        logs = answer.get("logs")
        if not isinstance(logs, list):
            raise ProtocolError("GET /v1/logs answered without a 'logs' list")
        return [str(name) for name in logs]

    async def describe_log(self, name: str) -> LogDescription:
        """Settings and tablets (leader, epoch, ISR, offsets) of a log; raises NotFound."""
        return await self.metadata.log(name, refresh=True)

    async def delete_log(self, name: str) -> None:
        """Delete a log and its data on every replica; raises NotFound."""
        await self._call("DELETE", log_path(name), idempotent=False, expect_body=False)
        self.metadata.forget(name)

    async def status(self) -> Status:
        """Every log's tablets from the leaders' point of view (``GET /v1/status``).

        Nodes that predate ``/v1/status`` (404) get the same assembled from ``/v1/cluster`` and
        ``/v1/logs/{log}``, without ``end_offset`` and ``replica_lag``.
        """
        try:
            answer = await self._call("GET", "/v1/status")
            return Status.parse(answer.json_object())
        except NotFound:
            pass
        cluster = await self.cluster()
        logs = []
        for name in await self.list_logs():
            try:
                description = await self.describe_log(name)
            except NotFound:
                continue  # deleted meanwhile
            logs.append(LogStatus(description.name, description.tablets))
        return Status(cluster.cluster, cluster.controller, cluster.nodes, tuple(logs))

    async def offset_for_timestamp(self, log: str, tablet: int, timestamp_ms: int) -> int:
        """The first offset of ``tablet`` appended at or after ``timestamp_ms``."""
        answer = await self._call(
            "GET",
            log_path(log, "tablets", tablet, "offsets"),
            params={"timestamp": timestamp_ms},
        )
        offset = answer.json_object().get("offset")
        if not isinstance(offset, int):
            raise ProtocolError("the offsets endpoint answered without an integer 'offset'")
        return offset

    # -----------------------------------------------------------------------------------------
    # consumer groups

    async def commit(self, group: str, offsets: Mapping[TabletKey, int]) -> None:
        """Store ``group``'s committed offsets: for each (log, tablet) the next offset to read."""
        body = {
            "offsets": [
                {"log": log, "tablet": tablet, "offset": offset}
                for (log, tablet), offset in offsets.items()
            ]
        }
        path = f"/v1/groups/{quote(group, safe='')}/offsets"
        await self._call("POST", path, json_body=body, expect_body=False)

    async def committed(self, group: str, log: str) -> dict[TabletKey, int]:
        """``group``'s committed offsets for ``log`` (tablets never committed are absent)."""
        path = f"/v1/groups/{quote(group, safe='')}/offsets"
        try:
            answer = (await self._call("GET", path, params={"log": log})).json_object()
        except NotFound:
            return {}
        out: dict[TabletKey, int] = {}
        for entry in answer.get("offsets") or []:
            if isinstance(entry, dict) and entry.get("log", log) == log:
                out[(log, int(entry["tablet"]))] = int(entry["offset"])
        return out

    # -----------------------------------------------------------------------------------------
    # producers and consumers

    async def init_producer(self) -> ProducerIdentity:
        """``POST /v1/producers``: a new idempotent-producer id, epoch and token from the
        cluster (any node issues them). Idempotent producers call it once per session."""
        answer = await self._call("POST", "/v1/producers", json_body={})
        return ProducerIdentity.parse(answer.json_object())

    def producer(
        self,
        log: str,
        *,
        acks: Acks = "all",
        linger_ms: float = 5,
        max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
        idempotent: bool = True,
        delivery_timeout_s: float = 120.0,
        **options: Any,
    ) -> Producer:
        """A batching producer for ``log`` (see :class:`~client.producer.Producer`)."""
        return Producer(
            self,
            log,
            acks=acks,
            linger_ms=linger_ms,
            max_batch_bytes=max_batch_bytes,
            idempotent=idempotent,
            delivery_timeout_s=delivery_timeout_s,
            **options,
        )

    def consume(
        self,
        log: str,
        tablet: int,
        start: Start = "earliest",
        *,
        reset: Reset = None,
        **options: Any,
    ) -> Consumer:
        """An async iterator of ``tablet``'s records from ``start``; see :class:`Consumer`."""
        return Consumer(self, log, tablet, start, reset=reset, **options)

    # -----------------------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        json_body: Any = None,
        idempotent: bool = True,
        expect_body: bool = True,
    ) -> Response:
        """One admin request to any node, retrying retriable answers until ``timeout_s``.

        A write whose outcome is unknown (a timeout) is not retried, so a create is never sent
        twice without the caller knowing.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout_s
        delay_s = 0.05
        while True:
            response = await self.metadata.request_any(
                method, path, params=params, json_body=json_body, idempotent=idempotent
            )
            try:
                response.raise_for_error()
            except ClientError as exc:
                retry = exc.retriable and (idempotent or not exc.outcome_unknown)
                if not retry or loop.time() + delay_s > deadline:
                    raise
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 1.0)
                continue
            if expect_body and not response.body:
                raise ProtocolError(f"{method} {path} answered with an empty body")
            return response
