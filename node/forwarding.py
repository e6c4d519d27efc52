"""Forwarding a public request to the node that can answer it (a tablet's leader).

So that ``curl`` against any node works: the receiving node replays the request on the right
node with ``X-Tabletlog-No-Forward: 1`` (a request is forwarded at most once, so two nodes with
different views can never bounce it between them) and relays status, headers and body.
Event-loop thread only.
"""

from __future__ import annotations

import aiohttp
from aiohttp import web

from node.context import NO_FORWARD_HEADER, NodeContext
from replication.peer_errors import CONNECTION_ERRORS, peer_unreachable

_RELAYED_HEADERS = ("Content-Type",)
_RELAYED_PREFIX = "X-Tabletlog-"


def may_forward(request: web.Request) -> bool:
    """False when the request was already forwarded once (or the client asked for no hops)."""
    return request.headers.get(NO_FORWARD_HEADER) != "1"


async def forward(ctx: NodeContext, request: web.Request, address: str) -> web.Response:
    """Replay ``request`` on the node at ``address`` and relay its answer.

    Raises PeerUnreachable when that node cannot be reached (the caller decides whether a
    retry elsewhere is safe: for a produce the outcome is then unknown).
    """
    body = await request.read() if request.can_read_body else None
    headers = {NO_FORWARD_HEADER: "1"}
    if request.content_type:
        headers["Content-Type"] = request.content_type
    url = f"http://{address}{request.rel_url}"
    timeout_s = ctx.request_timeout_s() + 5
    try:
        async with ctx.session.request(
            request.method,
            url,
            data=body,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as upstream:
            payload = await upstream.read()
            relayed = {
                k: v
                for k, v in upstream.headers.items()
                if k in _RELAYED_HEADERS or k.startswith(_RELAYED_PREFIX)
            }
            return web.Response(status=upstream.status, body=payload, headers=relayed)
    except CONNECTION_ERRORS as exc:
        raise peer_unreachable(address, exc, timeout_s) from None
