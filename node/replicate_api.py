"""The leader side of replication streams (see replication.protocol): ``/internal/replicate``.

A follower node opens one WebSocket per leader node. Each ``F`` fetch first records the
follower's positions — including its acknowledgement, ``durable_offset`` — then parks until one
of its tablets has data beyond its ``fetch_offset`` (or ``wait_ms`` passes) and is answered
with one ``D`` message of raw batch bytes. ``A`` acks may arrive at any time, also while a fetch
is parked: they move the high watermark without waiting for the next fetch.

Event-loop thread only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from aiohttp import WSMsgType, web

from node.context import CONTEXT, NodeContext
from replication.leader import TabletLeader
from replication.model import TabletId
from replication.protocol import (
    FENCED_LEADER_EPOCH,
    MAX_MESSAGE_BYTES,
    NOT_A_REPLICA,
    NOT_LEADER,
    OFFSET_OUT_OF_RANGE,
    REPLICATE_PATH,
    STORAGE_ERROR,
    UNKNOWN_LEADER_EPOCH,
    Ack,
    FetchPosition,
    FetchRequest,
    ProtocolError,
    TabletFetchResult,
    decode_follower_message,
    encode_data,
)
from storage.errors import CorruptSegment

log = logging.getLogger(__name__)

PER_TABLET_MAX_BYTES = 4 * 1024 * 1024


def routes() -> list[web.RouteDef]:
    return [web.get(REPLICATE_PATH, replicate)]


async def replicate(request: web.Request) -> web.WebSocketResponse:
    """Serve one follower node's replication stream until it closes."""
    ctx = request.app[CONTEXT]
    ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_BYTES, compress=False)
    await ws.prepare(request)
    serving: asyncio.Task[None] | None = None
    try:
        async for message in ws:
            if message.type != WSMsgType.BINARY:
                break
            try:
                decoded = decode_follower_message(message.data)
            except ProtocolError as exc:
                log.warning("closing a replication stream: %s", exc)
                break
            if isinstance(decoded, FetchRequest):
                ctx.metrics.fetch_requests.inc()
                # Positions are recorded now, in message order: an ack that follows this fetch
                # on the stream must find the fetch offset it acknowledges already known.
                checked = [_check(ctx, decoded.replica, p) for p in decoded.positions]
                # The follower fetches again once it has our answer, which may be before our
                # send has returned (draining): answer in order, after the previous one.
                serving = asyncio.create_task(
                    _serve_fetch(ws, decoded, checked, serving, ctx.replicas.on_corruption)
                )
            else:
                _apply_acks(ctx, *decoded)
    finally:
        if serving is not None:
            serving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await serving
        await ws.close()
    return ws


def _apply_acks(ctx: NodeContext, replica: str, acks: list[Ack]) -> None:
    for ack in acks:
        leader = ctx.replicas.leader_for(TabletId(ack.log, ack.tablet))
        if leader is not None and leader.leader_epoch == ack.leader_epoch:
            leader.on_ack(replica, ack.durable_offset)


async def _serve_fetch(
    ws: web.WebSocketResponse,
    request: FetchRequest,
    checked: list[tuple[FetchPosition, TabletLeader | TabletFetchResult]],
    previous: asyncio.Task[None] | None,
    on_corruption: Callable[[TabletId, CorruptSegment], None],
) -> None:
    if previous is not None:
        await previous  # never raises: see the end of this function
    active = [(p, target) for p, target in checked if isinstance(target, TabletLeader)]
    if (
        len(active) == len(checked)
        and active
        and request.wait_ms > 0
        and not any(leader.has_news_for(p.fetch_offset) for p, leader in active)
    ):
        loop = asyncio.get_running_loop()
        woken: asyncio.Future[None] = loop.create_future()
        for _, leader in active:
            leader.wake_on_append(woken)
        timer = loop.call_later(request.wait_ms / 1000, _resolve, woken)
        try:
            await woken
        finally:
            timer.cancel()
            for _, leader in active:
                leader.forget_waiter(woken)
    budget = request.max_bytes
    results: list[TabletFetchResult] = []
    for position, target in checked:
        if isinstance(target, TabletLeader):
            result = _read_for(position, target, min(budget, PER_TABLET_MAX_BYTES), on_corruption)
            budget = max(budget - len(result.data), 1)
        else:
            result = target
        results.append(result)
    try:
        await ws.send_bytes(encode_data(results))
    except ConnectionError:
        pass  # the follower went away; the stream's receive loop ends and cleans up


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _check(
    ctx: NodeContext, replica: str, position: FetchPosition
) -> tuple[FetchPosition, TabletLeader | TabletFetchResult]:
    """The local leader for this position after recording the follower's progress, or the
    error result to send back for it."""
    tablet = TabletId(position.log, position.tablet)
    leader = ctx.replicas.leader_for(tablet)
    if leader is None:
        info = ctx.view.tablet(position.log, position.tablet)
        return position, _error(position, NOT_LEADER, info.leader_epoch if info else -1)
    if position.leader_epoch < leader.leader_epoch:
        return position, _error(position, FENCED_LEADER_EPOCH, leader.leader_epoch)
    if position.leader_epoch > leader.leader_epoch:
        return position, _error(position, UNKNOWN_LEADER_EPOCH, leader.leader_epoch)
    if replica not in leader.followers:
        return position, _error(position, NOT_A_REPLICA, leader.leader_epoch)
    tablet_log = leader.log
    if not tablet_log.start_offset <= position.fetch_offset <= tablet_log.end_offset:
        return position, _error(position, OFFSET_OUT_OF_RANGE, leader.leader_epoch, leader)
    leader.on_fetch(
        replica, position.fetch_offset, position.durable_offset, position.high_watermark
    )
    return position, leader


def _error(
    position: FetchPosition, code: str, epoch: int, leader: TabletLeader | None = None
) -> TabletFetchResult:
    tablet_log = leader.log if leader is not None else None
    return TabletFetchResult(
        log=position.log,
        tablet=position.tablet,
        error=code,
        leader_epoch=epoch,
        high_watermark=tablet_log.high_watermark if tablet_log else 0,
        start_offset=tablet_log.start_offset if tablet_log else 0,
        end_offset=tablet_log.end_offset if tablet_log else 0,
    )


def _read_for(
    position: FetchPosition,
    leader: TabletLeader,
    max_bytes: int,
    on_corruption: Callable[[TabletId, CorruptSegment], None],
) -> TabletFetchResult:
    tablet_log = leader.log
    if leader.closed:
        return _error(position, NOT_LEADER, leader.leader_epoch)
    data = b""
    if position.fetch_offset < tablet_log.end_offset:
        try:
            result = tablet_log.read(
                position.fetch_offset, max_bytes, max_offset=tablet_log.end_offset
            )
        except CorruptSegment as exc:
            on_corruption(leader.tablet, exc)
            return _error(position, STORAGE_ERROR, leader.leader_epoch, leader)
        data = result.read_bytes() if not result.is_empty else b""
    return TabletFetchResult(
        log=position.log,
        tablet=position.tablet,
        error=None,
        leader_epoch=leader.leader_epoch,
        high_watermark=tablet_log.high_watermark,
        start_offset=tablet_log.start_offset,
        end_offset=tablet_log.end_offset,
        data=data,
    )
