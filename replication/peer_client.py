"""HTTP client for the data-path calls one node makes to another (fetch, epoch end offsets).

One ``aiohttp.ClientSession`` per node, keep-alive connections to every peer, every call
authenticated with the cluster-secret token and bounded by a timeout. Event-loop thread only.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from replication.auth import INTERNAL_TOKEN_HEADER, internal_token
from replication.errors import PeerError, PeerUnreachable
from replication.peer_errors import CONNECTION_ERRORS, peer_error, peer_unreachable
from replication.protocol import (
    EPOCH_END_PATH,
    MAX_MESSAGE_BYTES,
    REPLICATE_PATH,
    Ack,
    FetchRequest,
    ProtocolError,
    TabletFetchResult,
    decode_data,
    encode_ack,
    encode_fetch,
)


class PeerClient:
    """Typed calls to other nodes' internal API."""

    def __init__(self, session: aiohttp.ClientSession, secret: str) -> None:
        self._session = session
        self._headers = {INTERNAL_TOKEN_HEADER: internal_token(secret)}

    @property
    def session(self) -> aiohttp.ClientSession:
        return self._session

    async def open_stream(self, address: str, timeout_s: float) -> ReplicationStream:
        """Open a replication stream to the leader node at ``address``.

        Raises PeerUnreachable (``refused`` when nothing listens there) or PeerError.
        """
        url = f"http://{address}{REPLICATE_PATH}"
        try:
            ws = await self._session.ws_connect(
                url,
                headers=self._headers,
                compress=0,
                max_msg_size=MAX_MESSAGE_BYTES,
                autoping=True,
                timeout=aiohttp.ClientWSTimeout(ws_close=timeout_s),
                receive_timeout=None,
            )
        except aiohttp.WSServerHandshakeError as exc:
            raise PeerError(address, exc.status, "handshake_failed", exc.message) from None
        except CONNECTION_ERRORS as exc:
            raise peer_unreachable(address, exc, timeout_s) from None
        return ReplicationStream(address, ws)

    async def epoch_end(
        self,
        address: str,
        log: str,
        tablet: int,
        leader_epoch: int,
        requested_epoch: int,
        timeout_s: float,
    ) -> tuple[int, int]:
        """(largest epoch ≤ requested known to the leader, its exclusive end offset)."""
        reply = await self._post(
            address,
            EPOCH_END_PATH,
            {
                "log": log,
                "tablet": tablet,
                "leader_epoch": leader_epoch,
                "requested_epoch": requested_epoch,
            },
            timeout_s,
        )
        if not isinstance(reply, dict):
            raise ProtocolError("epoch end reply is not an object")
        return int(reply["epoch"]), int(reply["end_offset"])

    async def _post(
        self,
        address: str,
        path: str,
        payload: dict[str, Any],
        timeout_s: float,
    ) -> Any:
        url = f"http://{address}{path}"
        try:
            async with self._session.post(
                url,
                data=json.dumps(payload, separators=(",", ":")),
                headers={**self._headers, "Content-Type": "application/json"},
                timeout=aiohttp.ClientTimeout(total=timeout_s),
            ) as resp:
                body = await resp.read()
                if resp.status != 200:
                    raise peer_error(address, resp.status, body)
                return json.loads(body)
        except CONNECTION_ERRORS as exc:
            raise peer_unreachable(address, exc, timeout_s) from None


class ReplicationStream:
    """A follower's end of one replication stream (see replication.protocol).

    One coroutine sends fetches and receives data; acks may be sent from another at any time
    (sends are serialised). Event-loop thread only.
    """

    def __init__(self, address: str, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.address = address
        self._ws = ws
        self._send_lock = asyncio.Lock()

    @property
    def closed(self) -> bool:
        return self._ws.closed

    async def send_fetch(self, request: FetchRequest) -> None:
        await self._send(encode_fetch(request))

    async def send_acks(self, replica: str, acks: list[Ack]) -> None:
        await self._send(encode_ack(replica, acks))

    async def receive_data(self, timeout_s: float) -> list[TabletFetchResult]:
        """The answer to the outstanding fetch. Raises PeerUnreachable when the stream ends or
        nothing arrives in time, ProtocolError on a malformed message."""
        try:
            message = await self._ws.receive(timeout=timeout_s)
        except TimeoutError:
            raise PeerUnreachable(
                self.address, f"no answer within {timeout_s:.1f} s", refused=False
            ) from None
        if message.type != aiohttp.WSMsgType.BINARY:
            raise PeerUnreachable(
                self.address, f"replication stream ended ({message.type.name})", refused=False
            )
        return decode_data(message.data)

    async def _send(self, message: bytes) -> None:
        async with self._send_lock:
            try:
                await self._ws.send_bytes(message)
            except (ConnectionError, aiohttp.ClientError, RuntimeError) as exc:
                raise PeerUnreachable(
                    self.address, f"replication stream broken: {exc!r}", refused=False
                ) from None

    async def close(self) -> None:
        await self._ws.close()
