"""The HTTP seam: every byte the client sends to a node goes through a :class:`Transport`.

``HttpTransport`` is the real one (one aiohttp ``ClientSession`` with a pooled connector, so
requests to the same node reuse keep-alive connections). Tests substitute a scripted transport
with the same ``request`` signature: that is the seam the producer and consumer unit tests use,
instead of a fake cluster.

A transport turns network failures into :class:`~client.errors.ConnectionFailed` (or its
``RequestTimeout`` subclass) and returns every HTTP answer, error statuses included, as a
:class:`Response`; mapping statuses to errors is the caller's job (``Response.raise_for_error``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from client.errors import ConnectionFailed, ProtocolError, RequestTimeout, error_from_response

BATCH_CONTENT_TYPE = "application/vnd.tabletlog.batches"
NO_FORWARD_HEADER = "X-Tabletlog-No-Forward"
PRODUCER_TOKEN_HEADER = "X-Tabletlog-Producer-Token"  # noqa: S105 - a header name

Params = Mapping[str, str | int]


@dataclass(frozen=True, slots=True)
class Response:
    """One HTTP answer, fully read. Header names are matched case-insensitively."""

    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    address: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (any case), or None."""
        lowered = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lowered:
                return value
        return None

    def int_header(self, name: str) -> int | None:
        """Header ``name`` as an int, or None when absent or not a number."""
        value = self.header(name)
        try:
            return int(value) if value is not None else None
        except ValueError:
            return None

    def raise_for_error(self) -> None:
        """Raise the :class:`~client.errors.ServerError` for a non-2xx answer."""
        if not self.ok:
            raise error_from_response(self.status, self.body, address=self.address)

    def json(self) -> Any:
        """The decoded JSON body; raises ProtocolError when it is not JSON."""
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            raise ProtocolError(
                f"node {self.address} answered HTTP {self.status} with a body that is not JSON",
                address=self.address,
            ) from None

    def json_object(self) -> dict[str, Any]:
        """The body as a JSON object (raise for an error status first)."""
        self.raise_for_error()
        value = self.json()
        if not isinstance(value, dict):
            raise ProtocolError(
                f"node {self.address} answered with JSON that is not an object",
                address=self.address,
            )
        return value


class Transport(Protocol):
    """Sends one HTTP request to ``address`` (``host:port``) and returns the whole answer.

    Implementations must be safe to call concurrently from the event loop they run on.
    """

    async def request(
        self,
        method: str,
        address: str,
        path: str,
        *,
        params: Params | None = None,
        json_body: Any = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout_s: float,
    ) -> Response: ...

    async def close(self) -> None: ...


class HttpTransport:
    """aiohttp-backed transport: one session, one pooled connector, created on first use.

    The session is created lazily because aiohttp binds it to the running loop. Use from one
    event loop only; not thread-safe (the sync ``Client`` confines it to its loop thread).
    """

    def __init__(self, *, connections_per_node: int = 32) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._connections_per_node = connections_per_node
        self._closed = False

    def _get_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise ConnectionFailed("the client is closed", sent=False)
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=0, limit_per_host=self._connections_per_node, keepalive_timeout=30
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                # timeouts are given per request; the session default would cap long polls
                timeout=aiohttp.ClientTimeout(total=None),
                headers={"User-Agent": "tabletlog-python-client"},
                skip_auto_headers=("Content-Type",),
            )
        return self._session

    async def request(
        self,
        method: str,
        address: str,
        path: str,
        *,
        params: Params | None = None,
        json_body: Any = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout_s: float,
    ) -> Response:
        session = self._get_session()
        url = f"http://{address}{path}"
        send_headers = dict(headers or {})
        body: bytes | None = data
        if json_body is not None:
            body = json.dumps(json_body).encode()
            send_headers.setdefault("Content-Type", "application/json")
        query = {k: str(v) for k, v in (params or {}).items()}
        try:
            async with session.request(
                method,
                url,
                params=query,
                data=body,
                headers=send_headers,
                timeout=aiohttp.ClientTimeout(total=timeout_s),
            ) as answer:
                payload = await answer.read()
                return Response(answer.status, payload, dict(answer.headers), address)
        except aiohttp.ClientConnectorError as exc:
            # the TCP connection was never established: the node never saw the request
            reason = exc.os_error.strerror or _reason(exc)
            raise ConnectionFailed(
                f"cannot connect to {address}: {reason}", address=address, sent=False
            ) from exc
        except TimeoutError as exc:
            raise RequestTimeout(
                f"no answer from {address} within {timeout_s:g} s", address=address
            ) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise ConnectionFailed(
                f"connection to {address} failed: {_reason(exc)}", address=address
            ) from exc

    async def close(self) -> None:
        """Close pooled connections; later requests raise ConnectionFailed."""
        self._closed = True
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()
            # let aiohttp's transports finish closing so no ResourceWarning fires later
            await asyncio.sleep(0)


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0]
