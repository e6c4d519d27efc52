"""The one place where errors become HTTP responses: ``{"error", "message", ...}`` + status.

The status of a code is its entry in :mod:`wire.error_codes`: 4xx for the caller's mistakes,
503 for conditions that pass (no leader, too few replicas, a timeout whose outcome is unknown),
500 for bugs and for a code the table does not send over HTTP. Thread-safe (pure mapping +
middleware).
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
from storage.errors import DuplicateSequence, OffsetOutOfRange
from wire.error_codes import http_status
from wire.errors import TabletLogError

log = logging.getLogger(__name__)


class ApiError(TabletLogError):
    """An error raised by an HTTP handler with an explicit code (and optional extra fields).

    ``error_code`` is a code of :mod:`wire.error_codes`, which gives the answer's status; a code
    forwarded from another node that the table lacks is answered with 500.
    """

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
        status=status or http_status(code),
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
    return error_response(exc.code, str(exc), **fields)


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
