"""Internal endpoints other nodes call (cluster secret required, checked in node.app).

``POST /internal/epoch_end`` answers KIP-279 epoch end-offset queries; ``GET /internal/tablets``
reports the tablets this node leads (for describe and status). The replication stream itself is
in :mod:`node.replicate_api`. Event-loop thread only.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from node.context import CONTEXT
from node.http_errors import ApiError, bad_request
from replication.leader import TabletLeader
from replication.model import TabletId
from replication.protocol import EPOCH_END_PATH


def routes() -> list[web.RouteDef]:
    return [
        web.post(EPOCH_END_PATH, epoch_end),
        web.get("/internal/tablets", led_tablets),
    ]


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
        raise ApiError(
            "not_leader", f"node {ctx.node_id} does not lead {tablet.log}/{tablet.index}"
        )
    if leader_epoch != leader.leader_epoch:
        code = "stale_epoch" if leader_epoch < leader.leader_epoch else "unknown_leader_epoch"
        raise ApiError(
            code, f"epoch {leader_epoch} does not match the leader's {leader.leader_epoch}"
        )
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
        "followers": {node: p.fetch_offset for node, p in leader.followers.items()},
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
