"""A metadata-only node for the multi-process Raft tests: MetadataStore + Controller +
Heartbeater + the controller routes in an aiohttp app, no storage or data path.

    python -m tests.replication.metadata_node --config CFG --node ID --data-dir DIR

Extra endpoints (internal token required): ``GET /debug/state`` (view + Raft status) and
``POST /debug/propose`` (propose a raw command, to test stale and garbage commands end to end).
With ``--watch-leaders`` it imitates a follower's fetch loop: it polls the leader of every
tablet it follows and reports a refused connection to the controller, as the data path does.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from node.config import load_config
from node.controller_api import controller_routes
from replication.auth import INTERNAL_TOKEN_HEADER, token_is_valid
from replication.controller import Controller
from replication.controller_client import ControllerClient, tablet_to_json
from replication.errors import ReplicationError
from replication.heartbeat import Heartbeater
from replication.metadata import MetadataStore
from replication.model import ClusterView


def view_json(view: ClusterView) -> dict[str, Any]:
    return {
        "controller": view.controller,
        "controller_term": view.controller_term,
        "applied_index": view.applied_index,
        "nodes": {
            n.id: {"address": n.address, "alive": n.alive, "incarnation": n.incarnation}
            for n in view.nodes.values()
        },
        "logs": {name: dict(info.settings) for name, info in view.logs.items()},
        "tablets": [
            tablet_to_json(t) for t in sorted(view.tablets.values(), key=lambda t: (t.log, t.index))
        ],
    }


async def watch_leaders(
    store: MetadataStore, node_id: str, controller: Controller, client: ControllerClient
) -> None:
    """Imitate the follower fetch loops: report leaders whose port refuses connections."""
    while True:
        await asyncio.sleep(0.1)
        view = store.view
        leaders = {t.leader for t in view.tablets_replicated_on(node_id)} - {None, node_id}
        for leader in leaders:
            info = view.nodes.get(leader or "")
            if info is None or not info.alive or not await client.probe(info.address, 0.3):
                continue
            target = view.controller
            with contextlib.suppress(ReplicationError):
                if controller.is_active:
                    await controller.report_unreachable(node_id, leader or "")
                elif target and target in view.nodes:
                    await client.at(view.nodes[target].address).report_unreachable(
                        node_id, leader or ""
                    )


async def main(args: argparse.Namespace) -> None:
    config = load_config(args.config)
    spec = config.node(args.node)
    loop = asyncio.get_running_loop()
    voters = args.voters.split(",") if args.voters else None
    store = MetadataStore(
        config.raft_settings(),
        args.node,
        Path(args.data_dir) / "raft",
        loop,
        compaction_min_entries=args.compaction_entries,
        voters=voters,
    )
    session = aiohttp.ClientSession()
    client = ControllerClient(session, config.secret)
    controller = Controller(store, args.node, config.controller_settings(), client.probe)
    heartbeater = Heartbeater(
        store, args.node, time.time_ns(), spec.api_address, config.heartbeat_settings(), client
    )

    def authorized(request: web.Request) -> bool:
        return token_is_valid(request.headers.get(INTERNAL_TOKEN_HEADER), config.secret)

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "node": args.node})

    async def state(request: web.Request) -> web.Response:
        if not authorized(request):
            return web.json_response({"error": "unauthorized"}, status=401)
        return web.json_response(
            {
                "view": view_json(store.view),
                "status": store.status(),
                "active": controller.is_active,
                "ready": store.ready,
            }
        )

    async def propose(request: web.Request) -> web.Response:
        if not authorized(request):
            return web.json_response({"error": "unauthorized"}, status=401)
        cmd = json.loads(await request.read())
        try:
            result = await store.propose_entry(cmd, 3.0)
        except ReplicationError as exc:
            return web.json_response({"error": exc.code, "message": str(exc)}, status=503)
        return web.json_response(dataclasses.asdict(result))

    app = web.Application()
    app.add_routes(
        [
            web.get("/healthz", healthz),
            web.get("/debug/state", state),
            web.post("/debug/propose", propose),
        ]
    )
    app.add_routes(controller_routes(controller, config.secret, config.log_defaults))
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, spec.bind_host, spec.api_port, reuse_address=True).start()
    tasks = [asyncio.create_task(controller.run()), asyncio.create_task(heartbeater.run())]
    if args.watch_leaders:
        tasks.append(asyncio.create_task(watch_leaders(store, args.node, controller, client)))
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    for task in tasks:
        task.cancel()
    await controller.close()
    await runner.cleanup()
    await session.close()
    store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--node", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--compaction-entries", type=int, default=5000)
    parser.add_argument("--watch-leaders", action="store_true")
    parser.add_argument("--voters", help="comma-separated voter ids (default: every node)")
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(main(parser.parse_args()))
