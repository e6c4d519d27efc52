"""The node's aiohttp application: routes, middlewares, body limits.

Public routes (``/healthz``, ``/readyz``, ``/metrics``, ``/v1/...``) are open; everything under
``/internal/`` requires the cluster-secret token. Event-loop thread only.
"""

from __future__ import annotations

from aiohttp import web

from node import admin_api, data_api, peer_api, producer_api, replicate_api
from node.context import CONTEXT, NodeContext
from node.controller_api import controller_routes
from node.http_errors import Handler, error_middleware, error_response
from replication.auth import INTERNAL_TOKEN_HEADER, token_is_valid
from wire.batch import MAX_BATCH_BYTES

#: Largest request body: one maximal batch plus framing (JSON produce of the same data is bigger).
MAX_BODY_BYTES = 4 * MAX_BATCH_BYTES


def build_app(ctx: NodeContext) -> web.Application:
    """The application serving every endpoint of one node."""
    app = web.Application(
        client_max_size=MAX_BODY_BYTES,
        middlewares=[error_middleware, _internal_auth(ctx.config.secret)],
    )
    app[CONTEXT] = ctx
    app.add_routes(admin_api.routes())
    app.add_routes(data_api.routes())
    app.add_routes(peer_api.routes())
    app.add_routes(producer_api.routes())
    app.add_routes(replicate_api.routes())
    app.add_routes(controller_routes(ctx.controller, ctx.config.secret, ctx.config.log_defaults))
    return app


def _internal_auth(secret: str) -> web.middleware:  # type: ignore[valid-type]
    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/internal/") and not token_is_valid(
            request.headers.get(INTERNAL_TOKEN_HEADER), secret
        ):
            return error_response(
                "unauthorized", "internal endpoints require the cluster secret", 401
            )
        return await handler(request)

    return check
