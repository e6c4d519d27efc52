"""Public data endpoints: produce (JSON and binary), consume (JSON and binary), offsets, digest.

Handlers validate input (4xx with a sentence), then hand over to :mod:`node.produce` and
:mod:`node.consume`. Event-loop thread only.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from typing import Any

from aiohttp import web

from node.consume import ReadOutcome, read_committed, records_json, replica_digest
from node.context import CONTEXT, NodeContext
from node.forwarding import forward, may_forward
from node.http_errors import ApiError, bad_request, unknown_log
from node.produce import (
    BATCH_CONTENT_TYPE,
    ProduceOutcome,
    parse_acks,
    route_produce,
    wait_for_new_view,
)
from node.producer_api import checked_producer_token
from replication.errors import NoLeader, PeerUnreachable
from replication.leader import TabletLeader
from replication.model import TabletId
from storage.errors import CorruptSegment
from wire.batch import MAX_BATCH_BYTES, build_batch
from wire.partitioning import tablet_for_key

MAX_JSON_RECORDS = 100_000


def routes() -> list[web.RouteDef]:
    return [
        web.post("/v1/logs/{log}/records", produce_json),
        web.post("/v1/logs/{log}/tablets/{tablet}/batches", produce_binary),
        web.get("/v1/logs/{log}/tablets/{tablet}/records", consume_json),
        web.get("/v1/logs/{log}/tablets/{tablet}/batches", consume_binary),
        web.get("/v1/logs/{log}/tablets/{tablet}/offsets", offset_for_time),
        web.get("/v1/logs/{log}/tablets/{tablet}/replicas/{node}", replica_view),
    ]


# ---------------------------------------------------------------------------------- produce


async def produce_binary(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    tablet = _tablet(ctx, request)
    acks = parse_acks(request.query.get("acks", "all"))
    timeout_s = _timeout_s(ctx, request)
    body = await request.read()
    if not body:
        raise bad_request("the body must hold at least one record batch")
    token = checked_producer_token(request, body)  # before routing: refused means not written
    started = time.perf_counter()
    outcome = await route_produce(
        ctx, tablet, body, acks, timeout_s, allow_forward=may_forward(request), producer_token=token
    )
    ctx.metrics.observe_produce(
        tablet.log,
        outcome.end_offset - outcome.base_offset,
        len(body),
        time.perf_counter() - started,
    )
    return web.json_response(outcome.to_json())


async def produce_json(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    log_name = request.match_info["log"]
    log_info = ctx.view.logs.get(log_name)
    if log_info is None:
        raise unknown_log(ctx, log_name)
    raw = await request.json()
    if not isinstance(raw, dict):
        raise bad_request("the body must be a JSON object with a records list")
    acks = parse_acks(raw.get("acks", "all"))
    records = raw.get("records")
    if not isinstance(records, list) or not records:
        raise bad_request("records must be a non-empty list")
    if len(records) > MAX_JSON_RECORDS:
        raise ApiError("payload_too_large", f"at most {MAX_JSON_RECORDS} records per request")
    tablets = log_info.tablet_count
    groups: dict[int, list[tuple[int, bytes | None, bytes]]] = {}
    keyless_tablet = _next_round_robin(ctx, log_name, tablets)
    for position, item in enumerate(records):
        key, value, explicit = _parse_record(item, position, tablets)
        tablet = (
            explicit
            if explicit is not None
            else (tablet_for_key(key, tablets) if key is not None else keyless_tablet)
        )
        groups.setdefault(tablet, []).append((position, key, value))
    timeout_s = _timeout_s(ctx, request)
    now_ms = int(time.time() * 1000)
    started = time.perf_counter()

    async def send(tablet: int, items: list[tuple[int, bytes | None, bytes]]) -> ProduceOutcome:
        batch = build_batch([(k, v) for _, k, v in items], create_time_ms=now_ms)
        if len(batch) > MAX_BATCH_BYTES:
            raise ApiError(
                "payload_too_large",
                f"records for one tablet exceed {MAX_BATCH_BYTES} bytes; send fewer per request",
            )
        return await route_produce(
            ctx, TabletId(log_name, tablet), batch, acks, timeout_s, allow_forward=True
        )

    order = sorted(groups)
    outcomes = await asyncio.gather(*(send(t, groups[t]) for t in order))
    offsets: list[dict[str, int]] = [{}] * len(records)
    total = 0
    for tablet, outcome in zip(order, outcomes, strict=True):
        for i, (position, _, _) in enumerate(groups[tablet]):
            offsets[position] = {"tablet": tablet, "offset": outcome.base_offset + i}
        total += len(groups[tablet])
    ctx.metrics.observe_produce(
        log_name, total, request.content_length or 0, time.perf_counter() - started
    )
    return web.json_response({"offsets": offsets})


def _parse_record(
    item: object, position: int, tablets: int
) -> tuple[bytes | None, bytes, int | None]:
    where = f"records[{position}]"
    if not isinstance(item, dict):
        raise bad_request(f"{where} must be an object")
    key = _text_or_b64(item, "key", where, required=False)
    value = _text_or_b64(item, "value", where, required=True)
    assert value is not None
    explicit = item.get("tablet")
    if explicit is not None and (
        not isinstance(explicit, int) or isinstance(explicit, bool) or not 0 <= explicit < tablets
    ):
        raise bad_request(f"{where}.tablet must be an integer in [0, {tablets})")
    return key, value, explicit


def _text_or_b64(item: dict[str, Any], name: str, where: str, *, required: bool) -> bytes | None:
    text, b64 = item.get(name), item.get(f"{name}_b64")
    if text is not None and b64 is not None:
        raise bad_request(f"{where}: give {name} or {name}_b64, not both")
    if b64 is not None:
        if not isinstance(b64, str):
            raise bad_request(f"{where}.{name}_b64 must be a base64 string")
        try:
            return base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            raise bad_request(f"{where}.{name}_b64 is not valid base64") from None
    if text is None:
        if required:
            raise bad_request(f"{where} needs a {name} (string) or {name}_b64")
        return None
    if not isinstance(text, str):
        raise bad_request(f"{where}.{name} must be a string")
    return text.encode()


def _next_round_robin(ctx: NodeContext, log_name: str, tablets: int) -> int:
    n = ctx.round_robin.get(log_name, -1) + 1
    ctx.round_robin[log_name] = n
    return n % tablets


# ---------------------------------------------------------------------------------- consume


async def _leader_or_forward(
    ctx: NodeContext, request: web.Request, tablet: TabletId
) -> TabletLeader | web.Response:
    """The local leader of ``tablet``, or the leader's own answer to this request.

    While leadership is moving (no leader yet, or the named leader has not taken over), wait
    for the metadata to settle, up to the request timeout; reads have no side effects, so
    retrying after any failure is safe.
    """
    deadline = time.monotonic() + ctx.request_timeout_s()
    while True:
        leader = ctx.replicas.leader_for(tablet)
        if leader is not None:
            return leader
        info = ctx.view.tablet(tablet.log, tablet.index)
        if info is None:
            raise ApiError("not_found", f"log {tablet.log} has no tablet {tablet.index}")
        address = ctx.address_of(info.leader) if info.leader else None
        error: Exception = NoLeader(f"tablet {tablet.log}/{tablet.index} has no leader right now")
        if address is not None and info.leader != ctx.node_id:
            if not may_forward(request):
                raise ApiError(
                    "not_leader",
                    f"node {ctx.node_id} does not lead tablet {tablet.log}/{tablet.index}",
                    leader=info.leader,
                    leader_address=address,
                )
            try:
                response = await forward(ctx, request, address)
                if response.status not in (421, 503):
                    return response
                error = ApiError(
                    "no_leader", f"the leader of {tablet.log}/{tablet.index} is changing"
                )
                if time.monotonic() >= deadline:
                    return response
            except PeerUnreachable as exc:
                error = exc
        if time.monotonic() >= deadline or not may_forward(request):
            raise error
        await wait_for_new_view(ctx, 0.05)


async def _read(request: web.Request) -> ReadOutcome | web.Response:
    ctx = request.app[CONTEXT]
    tablet = _tablet(ctx, request)
    offset = _int_param(request, "offset", required=True, minimum=0)
    max_bytes = _int_param(
        request, "max_bytes", default=1024 * 1024, minimum=1, maximum=16 * 1024 * 1024
    )
    wait_ms = _int_param(request, "wait_ms", default=0, minimum=0, maximum=60_000)
    target = await _leader_or_forward(ctx, request, tablet)
    if isinstance(target, web.Response):
        return target
    try:
        return await read_committed(target, offset, max_bytes, wait_ms)
    except CorruptSegment as exc:
        ctx.replicas.on_corruption(tablet, exc)  # never served; the replica gets repaired
        raise


async def consume_json(request: web.Request) -> web.Response:
    max_records = _int_param(request, "max_records", default=1000, minimum=1, maximum=100_000)
    outcome = await _read(request)
    if isinstance(outcome, web.Response):
        return outcome
    body = records_json(outcome, max_records)
    request.app[CONTEXT].metrics.observe_consume(request.match_info["log"], len(body["records"]))
    return web.json_response(body)


async def consume_binary(request: web.Request) -> web.Response:
    outcome = await _read(request)
    if isinstance(outcome, web.Response):
        return outcome
    return web.Response(
        body=outcome.data,
        content_type=BATCH_CONTENT_TYPE,
        headers={
            "X-Tabletlog-High-Watermark": str(outcome.high_watermark),
            "X-Tabletlog-Start-Offset": str(outcome.start_offset),
            "X-Tabletlog-Next-Offset": str(outcome.next_offset),
        },
    )


async def offset_for_time(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    tablet = _tablet(ctx, request)
    timestamp = _int_param(request, "timestamp", required=True)
    target = await _leader_or_forward(ctx, request, tablet)
    if isinstance(target, web.Response):
        return target
    hw = target.log.high_watermark
    found = target.log.offset_for_timestamp(timestamp)
    offset = hw if found is None else min(found, hw)
    return web.json_response({"offset": offset})


async def replica_view(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    tablet = _tablet(ctx, request)
    node = request.match_info["node"]
    if node != ctx.node_id:
        address = ctx.address_of(node)
        if address is None:
            raise ApiError("not_found", f"no node named {node!r}")
        if not may_forward(request):
            raise ApiError("not_found", f"node {ctx.node_id} is not {node}")
        return await forward(ctx, request, address)
    replica = ctx.replicas.replica(tablet)
    if replica is None:
        raise ApiError("not_found", f"node {node} holds no replica of {tablet.log}/{tablet.index}")
    info = ctx.view.tablet(tablet.log, tablet.index)
    epoch = replica.log.latest_epoch if replica.log.latest_epoch is not None else -1
    if info is not None:
        epoch = info.leader_epoch if ctx.replicas.leader_for(tablet) else epoch
    try:
        return web.json_response(replica_digest(replica.log, epoch))
    except CorruptSegment as exc:
        ctx.replicas.on_corruption(tablet, exc)
        raise


# ---------------------------------------------------------------------------------- params


def _tablet(ctx: NodeContext, request: web.Request) -> TabletId:
    log_name = request.match_info["log"]
    log_info = ctx.view.logs.get(log_name)
    if log_info is None:
        raise unknown_log(ctx, log_name)
    raw = request.match_info["tablet"]
    if not raw.isdigit() or int(raw) >= log_info.tablet_count:
        raise ApiError(
            "not_found", f"log {log_name} has tablets 0..{log_info.tablet_count - 1}, not {raw!r}"
        )
    return TabletId(log_name, int(raw))


def _timeout_s(ctx: NodeContext, request: web.Request) -> float:
    default = ctx.config.tuning.request_timeout_ms
    return _int_param(request, "timeout_ms", default=default, minimum=1, maximum=300_000) / 1000


def _int_param(
    request: web.Request,
    name: str,
    *,
    required: bool = False,
    default: int = 0,
    minimum: int | None = None,
    maximum: int | None = None,
) -> int:
    raw = request.query.get(name)
    if raw is None:
        if required:
            raise bad_request(f"query parameter {name} is required")
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"query parameter {name} must be an integer, not {raw!r}") from None
    if minimum is not None and value < minimum:
        raise bad_request(f"query parameter {name} must be ≥ {minimum}")
    if maximum is not None and value > maximum:
        raise bad_request(f"query parameter {name} must be ≤ {maximum}")
    return value
