"""``POST /v1/producers`` (issue an idempotent-producer id) and the token check of produce.

A produce request whose batches carry a producer id must present that id's token
(``X-Tabletlog-Producer-Token``, issued with the id, see replication/producer_ids.py); the node
that receives the request checks it before routing, so a refused request writes nothing and
costs the leader nothing, and a forwarding node passes the header on (the leader checks again:
it cannot tell a forwarded request from a client's). One request, one producer: every batch
carries the same ``(producer_id, producer_epoch)``, or none (``producer_id`` -1).

Issuing needs no coordination and no state: ids are random and tokens are derived from the
cluster secret, so any node answers and every node accepts what another issued. Event-loop
thread only (the handler); :func:`check_produce_request` is pure.
"""

from __future__ import annotations

from aiohttp import web

from node.context import CONTEXT
from node.http_errors import ApiError, bad_request
from replication.producer_ids import PRODUCER_TOKEN_HEADER, issue, verify
from wire.batch import NO_PRODUCER_ID, iter_headers

MAX_INIT_BODY_BYTES = 1024
"""``POST /v1/producers`` takes no fields yet; a body beyond this is refused unread."""


def routes() -> list[web.RouteDef]:
    return [web.post("/v1/producers", init_producer)]


async def init_producer(request: web.Request) -> web.Response:
    """Issue a producer id, epoch 0 and its token (body: nothing or ``{}``)."""
    ctx = request.app[CONTEXT]
    if request.content_length is not None and request.content_length > MAX_INIT_BODY_BYTES:
        raise ApiError("payload_too_large", f"the body takes at most {MAX_INIT_BODY_BYTES} bytes")
    body = await request.content.read(MAX_INIT_BODY_BYTES + 1)
    if len(body) > MAX_INIT_BODY_BYTES:
        raise ApiError("payload_too_large", f"the body takes at most {MAX_INIT_BODY_BYTES} bytes")
    if body.strip() not in (b"", b"{}"):
        raise bad_request("POST /v1/producers takes no fields: send no body or {}")
    return web.json_response(issue(ctx.config.secret).to_json())


def check_produce_request(secret: str, body: bytes, token: str | None) -> str | None:
    """Refuse ``body`` (whole batches) unless its producer id, if any, comes with its token.

    Returns the token to pass on when forwarding (None for batches without a producer id).
    Raises ApiError ``unknown_producer`` (403) for a producer id without a valid token,
    ``bad_request`` for batches of several producers or a producer id below -1, and CorruptBatch
    (400) for bytes that are not whole batches. Reads only the batch headers; CRCs are the
    leader's to check.
    """
    producer: tuple[int, int] | None = None
    for index, (_pos, h) in enumerate(iter_headers(body, verify=False)):
        this = (h.producer_id, h.producer_epoch)
        if index == 0:
            producer = this
        elif this != producer:
            raise bad_request(
                "every batch of one request must carry the same producer id and epoch"
            )
    if producer is None or producer[0] == NO_PRODUCER_ID:
        return None
    producer_id, producer_epoch = producer
    if producer_id < 0:
        raise bad_request(f"producer_id must be -1 (none) or an issued id, not {producer_id}")
    if not verify(secret, producer_id, producer_epoch, token):
        raise ApiError(
            "unknown_producer",
            f"producer id {producer_id} epoch {producer_epoch} needs the token issued with it "
            f"in {PRODUCER_TOKEN_HEADER} (POST /v1/producers issues one)",
        )
    return token


def checked_producer_token(request: web.Request, body: bytes) -> str | None:
    """:func:`check_produce_request` for a produce ``request`` with ``body``."""
    secret = request.app[CONTEXT].config.secret
    return check_produce_request(secret, body, request.headers.get(PRODUCER_TOKEN_HEADER))
