"""Where a producer's ids come from: ``POST /v1/producers``, once per producer, fresh per session.

A producer's tablets share one identity for their first session (one init call however many
tablets it writes, as Kafka's InitProducerId); a tablet that must start over (a failed batch,
the sequence space used up, an identity the cluster no longer accepts) gets a fresh one of its
own. Confined to the producer's event loop; not thread-safe.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from client.models import ProducerIdentity

if TYPE_CHECKING:
    from client.async_client import AsyncClient


class ProducerIdentities:
    """The shared identity of one producer (fetched on first use) and fresh ones on demand."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client
        self._shared: asyncio.Future[ProducerIdentity] | None = None

    @property
    def producer_id(self) -> int:
        """The shared identity's id, -1 until the cluster issued it."""
        shared = self._shared
        if shared is None or not shared.done() or shared.cancelled() or shared.exception():
            return -1
        return shared.result().producer_id

    async def get(self, *, fresh: bool) -> ProducerIdentity:
        """The shared identity (one request, whoever asks first; asked again after a failure),
        or with ``fresh`` a new one. Raises the ClientError of the init request."""
        if fresh:
            return await self._client.init_producer()
        shared = self._shared
        if shared is None or (shared.done() and (shared.cancelled() or shared.exception())):
            shared = asyncio.ensure_future(self._client.init_producer())
            self._shared = shared
        return await asyncio.shield(shared)

    def forget_shared(self) -> None:
        """The cluster refused the shared identity: the next first session fetches another."""
        self._shared = None
