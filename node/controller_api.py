"""The controller's internal HTTP API: ``POST /internal/controller/<op>`` with JSON bodies.

Only nodes of the cluster may call it: every request needs the internal token derived from the
cluster secret (401 otherwise). Bodies are validated field by field (400 ``bad_request``); a node
that is not the active controller answers 503 ``not_controller`` with ``{"controller": id}`` so
the caller can retry there. Errors use the shared JSON shape of ``node.http_errors``.

=================== ======================================================== ==============
op                  body                                                     answer
=================== ======================================================== ==============
heartbeat           node, incarnation, address                               controller,
                                                                             term, registered
create_log          name, settings (LogSettings fields; defaults fill gaps)  tablets
delete_log          name                                                     ok
alter_isr           log, tablet, leader, leader_epoch, version, isr          tablet
elect_leader        log, tablet, leader_epoch, new_leader                    tablet
report_unreachable  reporter, node                                           fenced
commit_offsets      group, offsets: [[log, tablet, offset]]                  ok
=================== ======================================================== ==============

Event-loop thread only.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from node.http_errors import error_response, response_for
from replication.auth import INTERNAL_TOKEN_HEADER, token_is_valid
from replication.controller import Controller
from replication.controller_client import CONTROLLER_PATH, tablet_to_json
from replication.errors import CommandRejected
from replication.log_settings import LogSettings, LogSettingsError
from wire.errors import TabletLogError

Body = dict[str, Any]
Op = Callable[[Controller, Body], Awaitable[dict[str, Any]]]


class _BadRequest(Exception):
    """A malformed field; becomes 400 bad_request."""


def _str(body: Body, key: str, limit: int = 256) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value or len(value) > limit:
        raise _BadRequest(f"{key} must be a non-empty string (at most {limit} characters)")
    return value


def _int(body: Body, key: str) -> int:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise _BadRequest(f"{key} must be a non-negative integer")
    return value


def _str_list(body: Body, key: str) -> list[str]:
    value = body.get(key)
    if (
        not isinstance(value, list)
        or not value
        or len(value) > 64
        or not all(isinstance(v, str) and v for v in value)
    ):
        raise _BadRequest(f"{key} must be a non-empty list of node ids")
    return value


async def _heartbeat(controller: Controller, body: Body) -> dict[str, Any]:
    return await controller.handle_heartbeat(
        _str(body, "node", 64), _int(body, "incarnation"), _str(body, "address")
    )


async def _create_log(
    controller: Controller, body: Body, *, defaults: LogSettings
) -> dict[str, Any]:
    name = _str(body, "name", 200)
    raw = body.get("settings", {})
    if not isinstance(raw, dict):
        raise _BadRequest("settings must be an object")
    try:
        settings = defaults.merged(raw)
    except LogSettingsError as exc:
        raise _BadRequest(str(exc)) from None
    tablets = await controller.create_log(name, settings)
    return {"tablets": [tablet_to_json(t) for t in tablets]}


async def _delete_log(controller: Controller, body: Body) -> dict[str, Any]:
    await controller.delete_log(_str(body, "name", 200))
    return {"ok": True}


async def _alter_isr(controller: Controller, body: Body) -> dict[str, Any]:
    tablet = await controller.alter_isr(
        _str(body, "log", 200),
        _int(body, "tablet"),
        _str(body, "leader", 64),
        _int(body, "leader_epoch"),
        _int(body, "version"),
        _str_list(body, "isr"),
    )
    return {"tablet": tablet_to_json(tablet)}


async def _elect_leader(controller: Controller, body: Body) -> dict[str, Any]:
    tablet = await controller.elect_leader(
        _str(body, "log", 200),
        _int(body, "tablet"),
        _int(body, "leader_epoch"),
        _str(body, "new_leader", 64),
    )
    return {"tablet": tablet_to_json(tablet)}


async def _report_unreachable(controller: Controller, body: Body) -> dict[str, Any]:
    return await controller.report_unreachable(_str(body, "reporter", 64), _str(body, "node", 64))


async def _commit_offsets(controller: Controller, body: Body) -> dict[str, Any]:
    group = _str(body, "group")
    raw = body.get("offsets")
    if not isinstance(raw, list) or len(raw) > 10_000:
        raise _BadRequest("offsets must be a list of [log, tablet, offset]")
    offsets: list[tuple[str, int, int]] = []
    for i, item in enumerate(raw):
        if not isinstance(item, list) or len(item) != 3:
            raise _BadRequest(f"offsets[{i}] must be [log, tablet, offset]")
        entry = {"log": item[0], "tablet": item[1], "offset": item[2]}
        offsets.append((_str(entry, "log", 200), _int(entry, "tablet"), _int(entry, "offset")))
    await controller.commit_offsets(group, offsets)
    return {"ok": True}


OPS: dict[str, Op] = {
    "heartbeat": _heartbeat,
    "delete_log": _delete_log,
    "alter_isr": _alter_isr,
    "elect_leader": _elect_leader,
    "report_unreachable": _report_unreachable,
    "commit_offsets": _commit_offsets,
}


def controller_routes(
    controller: Controller, secret: str, log_defaults: LogSettings
) -> list[web.RouteDef]:
    """The internal controller routes, bound to ``controller`` and guarded by ``secret``;
    ``log_defaults`` fill the settings a create_log request leaves out."""
    ops: dict[str, Op] = {
        **OPS,
        "create_log": functools.partial(_create_log, defaults=log_defaults),
    }

    def handler_for(op: Op) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            if not token_is_valid(request.headers.get(INTERNAL_TOKEN_HEADER), secret):
                return error_response("unauthorized", "a valid internal token is required", 401)
            try:
                body = json.loads(await request.read())
            except (ValueError, UnicodeDecodeError):
                return error_response("bad_request", "the body must be JSON", 400)
            if not isinstance(body, dict):
                return error_response("bad_request", "the body must be a JSON object", 400)
            try:
                return web.json_response(await op(controller, body))
            except _BadRequest as exc:
                return error_response("bad_request", str(exc), 400)
            except CommandRejected as exc:  # keep the map's reason machine-readable
                return error_response(exc.code, exc.detail, reason=exc.reason)
            except TabletLogError as exc:
                return response_for(exc)

        return handle

    return [web.post(f"{CONTROLLER_PATH}{name}", handler_for(op)) for name, op in ops.items()]
