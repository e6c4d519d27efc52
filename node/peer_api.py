"""Internal endpoints other nodes call (cluster secret required, checked in node.app).

``POST /internal/fetch`` is the leader side of pull replication (see replication.protocol):
record each follower's position (its acknowledgement) first, park until there is news for
some tablet or ``wait_ms`` passes, then answer with raw batch bytes per tablet.
``POST /internal/epoch_end`` answers KIP-279 epoch end-offset queries. ``GET /internal/tablets``
reports the tablets this node leads (for describe and status). Event-loop thread only.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from node.context import CONTEXT, NodeContext
from node.http_errors import ApiError, bad_request
from replication.leader import TabletLeader
from replication.model import TabletId
from replication.protocol import (
    EPOCH_END_PATH,
    FENCED_LEADER_EPOCH,
    FETCH_CONTENT_TYPE,
    FETCH_PATH,
    NOT_A_REPLICA,
    NOT_LEADER,
    OFFSET_OUT_OF_RANGE,
    UNKNOWN_LEADER_EPOCH,
    FetchPosition,
    FetchRequest,
    ProtocolError,
    TabletFetchResult,
    encode_fetch_response,
)

PER_TABLET_MAX_BYTES = 4 * 1024 * 1024


def routes() -> list[web.RouteDef]:
    return [
        web.post(FETCH_PATH, fetch),
        web.post(EPOCH_END_PATH, epoch_end),
        web.get("/internal/tablets", led_tablets),
    ]


async def fetch(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    try:
        fetch_request = FetchRequest.from_json(await request.json())
    except ProtocolError as exc:
        raise bad_request(str(exc)) from None
    ctx.metrics.fetch_requests.inc()
    checked = [_check(ctx, fetch_request.replica, p) for p in fetch_request.positions]
    active = [(p, leader) for p, leader in checked if isinstance(leader, TabletLeader)]
    all_ok = len(active) == len(checked)
    if all_ok and active and fetch_request.wait_ms > 0 and not any(
        leader.has_news_for(p.fetch_offset) for p, leader in active
    ):
        futures = [leader.data_future() for _, leader in active]
        _, pending = await asyncio.wait(futures, timeout=fetch_request.wait_ms / 1000,
                                         return_when=asyncio.FIRST_COMPLETED)
        for future in pending:
            future.cancel()
    budget = fetch_request.max_bytes
    results: list[TabletFetchResult] = []
    for position, target in checked:
        if isinstance(target, TabletLeader):
            result = _read_for(position, target, min(budget, PER_TABLET_MAX_BYTES))
            budget = max(budget - len(result.data), 1)
        else:
            result = target
        results.append(result)
    return web.Response(body=b"".join(encode_fetch_response(results)),
                        content_type=FETCH_CONTENT_TYPE)


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
    log = leader.log
    if position.fetch_offset > log.end_offset or position.fetch_offset < log.start_offset:
        return position, _error(position, OFFSET_OUT_OF_RANGE, leader.leader_epoch, leader)
    leader.on_fetch(replica, position.fetch_offset, position.high_watermark)
    return position, leader


def _error(position: FetchPosition, code: str, epoch: int,
           leader: TabletLeader | None = None) -> TabletFetchResult:
    log = leader.log if leader is not None else None
    return TabletFetchResult(
        log=position.log, tablet=position.tablet, error=code, leader_epoch=epoch,
        high_watermark=log.high_watermark if log else 0,
        start_offset=log.start_offset if log else 0,
        end_offset=log.end_offset if log else 0,
    )


def _read_for(position: FetchPosition, leader: TabletLeader, max_bytes: int) -> TabletFetchResult:
    log = leader.log
    if leader.closed:
        return _error(position, NOT_LEADER, leader.leader_epoch)
    data: bytes = b""
    if position.fetch_offset < log.end_offset:
        result = log.read(position.fetch_offset, max_bytes, max_offset=log.end_offset)
        data = result.read_bytes() if not result.is_empty else b""
    return TabletFetchResult(
        log=position.log, tablet=position.tablet, error=None,
        leader_epoch=leader.leader_epoch, high_watermark=log.high_watermark,
        start_offset=log.start_offset, end_offset=log.end_offset, data=data,
    )


async def epoch_end(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    raw = await request.json()
    if not isinstance(raw, dict):
        raise bad_request("body must be an object")
    try:
        tablet = TabletId(str(raw["log"]), int(raw["tablet"]))
        leader_epoch, requested = int(raw["leader_epoch"]), int(raw["requested_epoch"])
    except (KeyError, TypeError, ValueError):
        raise bad_request("log, tablet, leader_epoch and requested_epoch are required") from None
    leader = ctx.replicas.leader_for(tablet)
    if leader is None:
        raise ApiError("not_leader", f"node {ctx.node_id} does not lead {tablet.log}/"
                       f"{tablet.index}")
    if leader_epoch != leader.leader_epoch:
        code = "stale_epoch" if leader_epoch < leader.leader_epoch else "unknown_leader_epoch"
        raise ApiError(code, f"epoch {leader_epoch} does not match the leader's "
                       f"{leader.leader_epoch}")
    epoch, end_offset = leader.log.end_offset_for_epoch(requested)
    return web.json_response({"epoch": epoch, "end_offset": end_offset})


def leader_stats(leader: TabletLeader) -> dict[str, Any]:
    log = leader.log
    return {
        "log": leader.tablet.log,
        "tablet": leader.tablet.index,
        "leader_epoch": leader.leader_epoch,
        "start_offset": log.start_offset,
        "end_offset": log.end_offset,
        "high_watermark": log.high_watermark,
        "isr": list(leader.isr),
        "followers": {
            node: p.end_offset for node, p in leader.followers.items()
        },
    }


async def led_tablets(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    log_filter = request.query.get("log")
    stats = [
        leader_stats(leader)
        for tablet, leader in ctx.replicas.leaders.items()
        if not leader.closed and (log_filter is None or tablet.log == log_filter)
    ]
    return web.json_response({"node": ctx.node_id, "tablets": stats})
