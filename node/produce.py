"""Produce: route batches to the tablet leader, append, and wait for the requested acks.

Any node accepts a produce for any tablet. The leader appends locally; another node forwards
the batch bytes to the leader's binary endpoint once (``X-Tabletlog-No-Forward``). While
leadership is moving (no leader yet, or the leader's own metadata has not caught up), routing
retries until the request deadline — but only after answers that guarantee nothing was written
(``not_leader``, ``no_leader``); a timeout is reported as such, since its outcome is unknown.
A forwarded request (or one from a client that routes by itself) is answered at once instead:
whoever sent it holds the deadline. Event-loop thread only.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from node.context import NO_FORWARD_HEADER, NodeContext
from node.http_errors import ApiError
from replication.errors import NoLeader, NotLeader, PeerUnreachable, ReplicationTimeout
from replication.leader import TabletLeader
from replication.model import TabletId
from replication.peer_errors import CONNECTION_ERRORS, peer_unreachable
from replication.producer_ids import PRODUCER_TOKEN_HEADER
from storage.errors import DuplicateSequence
from storage.results import AppendResult
from wire.errors import TabletLogError

BATCH_CONTENT_TYPE = "application/vnd.tabletlog.batches"
ACKS = ("all", "1", "0")
_RETRY_CODES = {"not_leader", "no_leader"}
_ROUTE_RETRY_S = 0.05


@dataclass(frozen=True, slots=True)
class ProduceOutcome:
    """Where a produced request's records landed: ``[base_offset, end_offset)`` of the tablet."""

    tablet: int
    base_offset: int
    end_offset: int
    duplicate: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "tablet": self.tablet,
            "base_offset": self.base_offset,
            "end_offset": self.end_offset,
            "duplicate": self.duplicate,
        }


def parse_acks(raw: object) -> str:
    value = str(raw) if isinstance(raw, (str, int)) and not isinstance(raw, bool) else None
    if value not in ACKS:
        raise ApiError("bad_request", 'acks must be "all", "1" or "0"')
    return value


async def append_locally(
    leader: TabletLeader, body: bytes, acks: str, timeout_s: float
) -> ProduceOutcome:
    """Append on this node (the leader) and wait for ``acks``."""
    leader.check_can_append(acks)
    duplicate = False
    try:
        result = leader.append(body)
    except DuplicateSequence as dup:
        # The producer resent a batch we hold: answer with where it landed, once acknowledged.
        result = AppendResult(dup.base_offset, dup.end_offset, 0, 0, 0)
        duplicate = True
    try:
        await leader.wait_acked(result, acks, timeout_s)
    except ReplicationTimeout:
        raise
    except TabletLogError as exc:
        # Once appended, no failure may read as "not written": a retry would store it twice.
        raise ReplicationTimeout(
            f"the write was appended but not acknowledged ({exc}); it may or may not have committed"
        ) from exc
    return ProduceOutcome(leader.tablet.index, result.base_offset, result.end_offset, duplicate)


async def route_produce(
    ctx: NodeContext,
    tablet: TabletId,
    body: bytes,
    acks: str,
    timeout_s: float,
    *,
    allow_forward: bool,
    producer_token: str | None = None,
) -> ProduceOutcome:
    """Append ``body`` (whole batches) to ``tablet`` wherever its leader is.

    ``producer_token``: the checked token of the batches' producer id, passed on when
    forwarding (the leader checks it again, node/producer_api.py).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        remaining = deadline - time.monotonic()
        try:
            leader = ctx.replicas.leader_for(tablet)
            if leader is not None:
                return await append_locally(leader, body, acks, max(remaining, 0.001))
            info = ctx.view.tablet(tablet.log, tablet.index)
            if info is None:
                raise ApiError("not_found", f"log {tablet.log} has no tablet {tablet.index}")
            if info.leader is None:
                raise NoLeader(f"tablet {tablet.log}/{tablet.index} has no leader right now")
            address = ctx.address_of(info.leader)
            if info.leader == ctx.node_id or address is None:
                raise NotLeader(f"{tablet.log}/{tablet.index}", None)  # our view lags: wait
            if not allow_forward:
                raise ApiError(
                    "not_leader",
                    f"node {ctx.node_id} does not lead tablet {tablet.log}/{tablet.index}",
                    leader=info.leader,
                    leader_address=address,
                )
            return await _forward_batches(
                ctx, address, tablet, body, acks, remaining, producer_token
            )
        except (NoLeader, NotLeader, PeerUnreachable, ApiError) as exc:
            # A forwarded request answers at once: the node that forwarded it holds the
            # deadline and re-routes when its own view changes.
            if (
                not allow_forward
                or not _retriable(exc)
                or time.monotonic() + _ROUTE_RETRY_S >= deadline
            ):
                raise
            await wait_for_new_view(ctx, _ROUTE_RETRY_S)


def _retriable(exc: Exception) -> bool:
    if isinstance(exc, ApiError):
        return exc.error_code in _RETRY_CODES
    if isinstance(exc, PeerUnreachable):
        return exc.refused  # nothing was delivered; anything else may have been
    return True


async def wait_for_new_view(ctx: NodeContext, timeout_s: float) -> None:
    """Wait until the applied metadata changes, or ``timeout_s``."""
    index = ctx.view.applied_index
    try:
        await ctx.store.wait_for(lambda v: v.applied_index > index, timeout_s)
    except TimeoutError:
        pass
    except Exception:  # noqa: BLE001 - a metadata timeout here only means: try again
        await asyncio.sleep(0)


async def _forward_batches(
    ctx: NodeContext,
    address: str,
    tablet: TabletId,
    body: bytes,
    acks: str,
    timeout_s: float,
    producer_token: str | None,
) -> ProduceOutcome:
    url = (
        f"http://{address}/v1/logs/{tablet.log}/tablets/{tablet.index}/batches"
        f"?acks={acks}&timeout_ms={max(int(timeout_s * 1000), 1)}"
    )
    headers = {NO_FORWARD_HEADER: "1", "Content-Type": BATCH_CONTENT_TYPE}
    if producer_token is not None:
        headers[PRODUCER_TOKEN_HEADER] = producer_token
    try:
        async with ctx.session.post(
            url,
            data=body,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout_s + 2),
        ) as resp:
            payload = await resp.read()
    except aiohttp.ClientConnectorError as exc:  # not connected: nothing was delivered
        raise peer_unreachable(address, exc, timeout_s) from None
    except CONNECTION_ERRORS as exc:
        raise ApiError(
            "timeout",
            f"lost the connection to the leader at {address} ({exc!r}); "
            "the write may or may not have committed",
        ) from None
    try:
        reply = json.loads(payload)
    except ValueError:
        raise ApiError(
            "timeout",
            f"the leader at {address} gave an unreadable answer; "
            "the write may or may not have committed",
        ) from None
    if resp.status != 200:
        extra = {k: v for k, v in reply.items() if k not in ("error", "message")}
        raise ApiError(str(reply.get("error")), str(reply.get("message")), **extra)
    return ProduceOutcome(
        int(reply["tablet"]),
        int(reply["base_offset"]),
        int(reply["end_offset"]),
        bool(reply.get("duplicate", False)),
    )
