"""The one place where errors become HTTP responses: ``{"error", "message", ...}`` + status.

4xx for the caller's mistakes, 503 for conditions that pass (no leader, too few replicas, a
timeout whose outcome is unknown), 500 only for bugs. Thread-safe (pure mapping + middleware).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from node.context import NodeContext

from replication.errors import NotController, NotLeader
from storage.errors import DuplicateSequence, OffsetOutOfRange, TabletLogError

log = logging.getLogger(__name__)

STATUS_BY_CODE: dict[str, int] = {
    "bad_request": 400,
    "corrupt_batch": 400,
    "offset_out_of_range": 400,
    "unauthorized": 401,
    "not_found": 404,
    "already_exists": 409,
    "out_of_order_sequence": 409,
    "invalid_producer_epoch": 409,
    "stale_epoch": 409,
    "stale_version": 409,
    "command_rejected": 409,
    "payload_too_large": 413,
    "not_leader": 421,
    "not_enough_replicas": 503,
    "no_leader": 503,
    "unknown_leader_epoch": 503,
    "timeout": 503,
    "not_controller": 503,
    "metadata_unavailable": 503,
    "peer_unreachable": 503,
    "peer_error": 503,
    "log_closed": 503,
    "corrupt_segment": 503,
}


class ApiError(TabletLogError):
    """An error raised by an HTTP handler with an explicit code (and optional extra fields)."""

    def __init__(self, code: str, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.error_code = code
        self.fields = fields


def bad_request(message: str) -> ApiError:
    return ApiError("bad_request", message)


def unknown_log(ctx: NodeContext, name: str) -> ApiError:
    """404 for a log the map does not hold — or 503 while this node is still catching up with
    the map (a restarted node replaying its metadata), when "no such log" is not yet known."""
    if not ctx.store.ready:
        return ApiError(
            "metadata_unavailable",
            f"this node is still loading the cluster metadata; retry (log {name!r} may exist)",
        )
    return ApiError("not_found", f"no log named {name!r}")


def error_response(
    code: str, message: str, status: int | None = None, **fields: Any
) -> web.Response:
    body = {"error": code, "message": message, **fields}
    return web.Response(
        status=status or STATUS_BY_CODE.get(code, 500),
        text=json.dumps(body),
        content_type="application/json",
    )


def response_for(exc: TabletLogError) -> web.Response:
    """The JSON error response for an error raised on purpose."""
    if isinstance(exc, ApiError):
        return error_response(exc.error_code, str(exc), **exc.fields)
    fields: dict[str, Any] = {}
    if isinstance(exc, OffsetOutOfRange):
        fields = {"start_offset": exc.start_offset, "end_offset": exc.end_offset}
    elif isinstance(exc, NotLeader):
        fields = {"leader": exc.leader_hint}
    elif isinstance(exc, NotController):
        fields = {"controller": exc.controller}
    elif isinstance(exc, DuplicateSequence):
        fields = {"base_offset": exc.base_offset, "end_offset": exc.end_offset}
    code = exc.code
    status = STATUS_BY_CODE.get(code, 500 if not exc.retriable else 503)
    return error_response(code, str(exc), status, **fields)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn domain errors, bad JSON and aiohttp's own HTTP errors into JSON error bodies."""
    try:
        return await handler(request)
    except TabletLogError as exc:
        return response_for(exc)
    except web.HTTPRequestEntityTooLarge as exc:
        return error_response("payload_too_large", f"request body too large: {exc.text}", 413)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "not_found", 405: "bad_request", 401: "unauthorized"}.get(
            exc.status, "bad_request" if exc.status < 500 else "internal"
        )
        return error_response(code, exc.reason or "request failed", exc.status)
    except json.JSONDecodeError as exc:
        return error_response("bad_request", f"request body is not valid JSON: {exc.msg}")
    except UnicodeDecodeError:
        return error_response("bad_request", "request body is not valid UTF-8")
    except Exception:  # the root of a request: log the bug, keep serving
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response("internal", "internal error; see the node's log", 500)
