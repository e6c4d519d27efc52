"""Public control endpoints: health, cluster, logs (create/list/describe/delete), status, groups.

Reads come from this node's applied metadata plus the tablet leaders' own positions; changes
are made by the controller — this node's, or the controller node's over its internal API
(``NodeContext.active_controller``), called the same way. Event-loop thread only.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from node.context import CONTEXT, NodeContext
from node.forwarding import may_forward
from node.http_errors import ApiError, bad_request, unknown_log
from node.peer_api import leader_stats
from replication.auth import INTERNAL_TOKEN_HEADER, internal_token
from replication.controller_client import ControllerApi
from replication.errors import NotController, PeerUnreachable
from replication.log_settings import LogSettingsError
from replication.model import TabletInfo

LOG_NAME = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
GROUP_NAME = LOG_NAME


def routes() -> list[web.RouteDef]:
    return [
        web.get("/healthz", healthz),
        web.get("/readyz", readyz),
        web.get("/metrics", metrics),
        web.get("/v1/cluster", cluster),
        web.get("/v1/status", status),
        web.post("/v1/logs", create_log),
        web.get("/v1/logs", list_logs),
        web.get("/v1/logs/{log}", describe_log),
        web.delete("/v1/logs/{log}", delete_log),
        web.post("/v1/groups/{group}/offsets", commit_offsets),
        web.get("/v1/groups/{group}/offsets", committed_offsets),
    ]


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "node": request.app[CONTEXT].node_id})


async def readyz(request: web.Request) -> web.Response:
    """200 once this node has the metadata, knows a metadata leader, and every tablet the map
    says it leads is led here with its high watermark restored (``TabletLeader.hw_restored``:
    a consumer reading "to the end" right after a restart sees every acknowledged record).
    Else 503 with ``reason`` and, for tablets, ``tablets_not_restored`` (``"log/index"``)."""
    ctx = request.app[CONTEXT]
    leader = ctx.store.raft_leader_id()
    view = ctx.view
    reason: str | None = None
    waiting: list[str] = []
    if not ctx.store.ready:
        reason = "loading the cluster metadata"
    elif leader is None:
        reason = "no metadata (Raft) leader is known"
    else:
        for tablet, info in sorted(view.tablets.items()):
            if info.leader != ctx.node_id:
                continue
            local = ctx.replicas.leader_for(tablet)
            if local is None or local.leader_epoch != info.leader_epoch or not local.hw_restored:
                waiting.append(f"{tablet.log}/{tablet.index}")
        if waiting:
            reason = "restoring the high watermark of tablets this node leads"
    ready = reason is None
    body: dict[str, object] = {
        "ready": ready,
        "node": ctx.node_id,
        "metadata_leader": leader,
        "controller": view.controller,
    }
    if not ready:
        body["reason"] = reason
    if waiting:
        body["tablets_not_restored"] = waiting[:100]
    return web.json_response(body, status=200 if ready else 503)


async def metrics(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    ctx.metrics.refresh(ctx)
    return web.Response(
        body=generate_latest(ctx.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


async def cluster(request: web.Request) -> web.Response:
    view = request.app[CONTEXT].view
    return web.json_response(
        {
            "cluster": view.cluster_name,
            "controller": view.controller,
            "nodes": [
                {"id": n.id, "address": n.address, "alive": n.alive}
                for n in sorted(view.nodes.values(), key=lambda n: n.id)
            ],
        }
    )


async def list_logs(request: web.Request) -> web.Response:
    return web.json_response({"logs": sorted(request.app[CONTEXT].view.logs)})


# ---------------------------------------------------------------------------------- changes


async def create_log(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    raw = await request.json()
    if not isinstance(raw, dict):
        raise bad_request("the body must be a JSON object with a name")
    name = raw.get("name")
    if not isinstance(name, str) or not LOG_NAME.match(name):
        raise bad_request("name must be 1-100 characters of letters, digits, '.', '_' or '-'")
    overrides = {k: v for k, v in raw.items() if k != "name"}
    try:
        settings = ctx.config.log_defaults.merged(overrides)
    except LogSettingsError as exc:
        raise bad_request(str(exc)) from None
    if settings.replication_factor > len(ctx.view.nodes):
        raise bad_request(
            f"replication_factor {settings.replication_factor} exceeds the "
            f"{len(ctx.view.nodes)} nodes of the cluster"
        )
    await _via_controller(ctx, request, lambda controller: controller.create_log(name, settings))
    await _wait_until_visible(ctx, lambda: name in ctx.view.logs)  # read your own writes
    return web.json_response(await describe(ctx, name), status=201)


async def delete_log(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    name = request.match_info["log"]
    if name not in ctx.view.logs:
        raise unknown_log(ctx, name)
    await _via_controller(ctx, request, lambda controller: controller.delete_log(name))
    await _wait_until_visible(ctx, lambda: name not in ctx.view.logs)
    return web.Response(status=204)


async def commit_offsets(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    group = _group(request)
    raw = await request.json()
    items = raw.get("offsets") if isinstance(raw, dict) else None
    if not isinstance(items, list) or not items:
        raise bad_request("offsets must be a non-empty list of {log, tablet, offset}")
    offsets: list[list[Any]] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise bad_request(f"offsets[{i}] must be an object")
        log, tablet, offset = item.get("log"), item.get("tablet"), item.get("offset")
        if not isinstance(log, str) or log not in ctx.view.logs:
            raise ApiError("not_found", f"offsets[{i}]: no log named {log!r}")
        if (
            not isinstance(tablet, int)
            or not _nonneg_int(tablet)
            or tablet >= ctx.view.logs[log].tablet_count
        ):
            raise bad_request(f"offsets[{i}].tablet is not a tablet of {log}")
        if not _nonneg_int(offset):
            raise bad_request(f"offsets[{i}].offset must be a non-negative integer")
        offsets.append([log, tablet, offset])
    await _via_controller(
        ctx, request, lambda controller: controller.commit_offsets(group, offsets)
    )
    return web.Response(status=204)


async def committed_offsets(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    group = _group(request)
    log_filter = request.query.get("log")
    offsets = [
        {"log": log, "tablet": tablet, "offset": offset}
        for (g, log, tablet), offset in sorted(ctx.view.consumer_offsets.items())
        if g == group and (log_filter is None or log == log_filter)
    ]
    return web.json_response({"group": group, "offsets": offsets})


async def _via_controller(
    ctx: NodeContext,
    request: web.Request,
    change: Callable[[ControllerApi], Awaitable[object]],
) -> None:
    """Make a change through the active controller: this node's, or the controller node's.

    While no controller is known — a Raft election, the first second of a cluster — retry
    until the request deadline; only answers that guarantee nothing happened are retried
    (``not_controller``, a refused connection). A request marked not to be forwarded is only
    ever made on this node's own controller.
    """
    deadline = time.monotonic() + ctx.request_timeout_s()
    while True:
        try:
            controller = ctx.active_controller()
            if controller is not ctx.controller and not may_forward(request):
                raise NotController(ctx.view.controller)
            await change(controller)
            return
        except (NotController, PeerUnreachable) as exc:
            retriable = isinstance(exc, NotController) or exc.refused
            if not retriable or not may_forward(request) or time.monotonic() >= deadline:
                raise
            await _wait_for_new_view(ctx, ctx.view.applied_index, 0.1)
            await asyncio.sleep(0.02)


async def _wait_for_new_view(ctx: NodeContext, index: int, timeout_s: float) -> None:
    with contextlib.suppress(TimeoutError):
        await ctx.store.wait_for(lambda v: v.applied_index > index, timeout_s)


async def _wait_until_visible(ctx: NodeContext, predicate: Any) -> None:
    """Let this node's own view show the change, so the answer and the next read agree."""
    try:
        await ctx.store.wait_for(lambda _v: bool(predicate()), ctx.request_timeout_s())
    except TimeoutError:
        pass


# ---------------------------------------------------------------------------------- reads


async def describe_log(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    name = request.match_info["log"]
    if name not in ctx.view.logs:
        raise unknown_log(ctx, name)
    return web.json_response(await describe(ctx, name))


async def describe(ctx: NodeContext, name: str) -> dict[str, Any]:
    """The log description of docs/openapi.yaml: config, per tablet placement, leader positions."""
    info = ctx.view.logs[name]
    stats = await leader_positions(ctx, name)
    return {
        "name": name,
        "config": dict(info.settings),
        "tablets": [
            _tablet_json(t, stats.get((t.log, t.index))) for t in ctx.view.tablets_of(name)
        ],
    }


def _tablet_json(tablet: TabletInfo, stats: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "tablet": tablet.index,
        "leader": tablet.leader,
        "leader_epoch": tablet.leader_epoch,
        "replicas": list(tablet.replicas),
        "isr": list(tablet.isr),
        "start_offset": stats["start_offset"] if stats else 0,
        "high_watermark": stats["high_watermark"] if stats else 0,
        "end_offset": stats["end_offset"] if stats else 0,
    }


async def leader_positions(
    ctx: NodeContext, log: str | None
) -> dict[tuple[str, int], dict[str, Any]]:
    """Positions of the tablets of ``log`` (or all) as their leaders see them."""
    stats: dict[tuple[str, int], dict[str, Any]] = {}
    for tablet, leader in ctx.replicas.leaders.items():
        if not leader.closed and (log is None or tablet.log == log):
            stats[(tablet.log, tablet.index)] = leader_stats(leader)
    leaders = {
        t.leader
        for t in ctx.view.tablets.values()
        if t.leader and t.leader != ctx.node_id and (log is None or t.log == log)
    }
    answers = await asyncio.gather(*(_remote_stats(ctx, n, log) for n in sorted(leaders)))
    for answer in answers:
        for item in answer:
            stats.setdefault((item["log"], item["tablet"]), item)
    return stats


async def _remote_stats(ctx: NodeContext, node: str, log: str | None) -> list[dict[str, Any]]:
    address = ctx.address_of(node)
    if address is None:
        return []
    url = f"http://{address}/internal/tablets" + (f"?log={log}" if log else "")
    try:
        async with ctx.session.get(
            url,
            headers={INTERNAL_TOKEN_HEADER: internal_token(ctx.config.secret)},
            timeout=aiohttp.ClientTimeout(total=1.0),
        ) as resp:
            if resp.status != 200:
                return []
            tablets: list[dict[str, Any]] = (await resp.json())["tablets"]
            return tablets
    except (aiohttp.ClientError, TimeoutError, ValueError, KeyError):
        return []


async def status(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    view = ctx.view
    stats = await leader_positions(ctx, None)
    logs = []
    for name in sorted(view.logs):
        tablets = []
        for tablet in view.tablets_of(name):
            s = stats.get((tablet.log, tablet.index))
            entry = _tablet_json(tablet, s)
            end = s["end_offset"] if s else 0
            followers = s["followers"] if s else {}
            entry["replica_lag"] = {
                node: (end - pos if pos is not None else None) for node, pos in followers.items()
            }
            tablets.append(entry)
        logs.append({"name": name, "tablets": tablets})
    return web.json_response(
        {
            "cluster": view.cluster_name,
            "controller": view.controller,
            "node": ctx.node_id,
            "nodes": [
                {"id": n.id, "address": n.address, "alive": n.alive}
                for n in sorted(view.nodes.values(), key=lambda n: n.id)
            ],
            "logs": logs,
        }
    )


def _group(request: web.Request) -> str:
    group = request.match_info["group"]
    if not GROUP_NAME.match(group):
        raise bad_request("group must be 1-100 characters of letters, digits, '.', '_' or '-'")
    return group


def _nonneg_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
