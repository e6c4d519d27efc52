"""One node process: wires config, metadata, replicas, controller and the HTTP server.

Start-up order matters: the Raft metadata map is built on the main thread (pysyncobj's tick
thread dies with the thread that constructed it), then the replica manager subscribes to the
applied map, then the HTTP server starts listening on the configured bind address only.
Shutdown is the reverse, and graceful: stop accepting, hand off leadership where possible,
let in-flight appends finish, checkpoint and close every log.

Event-loop thread only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from node.app import build_app
from node.config import ClusterConfig
from node.context import NodeContext
from node.housekeeping import run_housekeeping
from node.metrics import NodeMetrics
from replication.controller import Controller
from replication.controller_client import ControllerClient
from replication.errors import NotController, ReplicationError
from replication.heartbeat import Heartbeater
from replication.isr import IsrMaintainer
from replication.leader import TabletLeader
from replication.metadata import MetadataStore
from replication.model import TabletInfo
from replication.peer_client import PeerClient
from replication.replica_manager import ReplicaManager
from replication.scrubber import Scrubber
from storage.checkpoint import read_checkpoint, write_checkpoint
from storage.files import FileCache, raise_nofile_limit
from storage.manager import LogManager

log = logging.getLogger(__name__)

INCARNATION_FILE = "incarnation"
SHUTDOWN_TIMEOUT_S = 1.0


class NodeServer:
    """Everything one node runs; ``start`` then ``wait_closed``/``stop``."""

    def __init__(self, config: ClusterConfig, node_id: str, data_dir: Path) -> None:
        self.config = config
        self.spec = config.node(node_id)
        self.data_dir = data_dir
        self.incarnation = 0  # chosen in start(): see _next_incarnation
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = asyncio.Event()
        self.ctx: NodeContext | None = None

    async def start(self) -> None:
        raise_nofile_limit()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.incarnation = _next_incarnation(self.data_dir / INCARNATION_FILE)
        connector = aiohttp.TCPConnector(
            limit=0, limit_per_host=0, keepalive_timeout=30, enable_cleanup_closed=True
        )
        session = aiohttp.ClientSession(connector=connector)
        store = MetadataStore(
            self.config.raft_settings(),
            self.spec.id,
            self.data_dir / "raft",
            asyncio.get_running_loop(),
        )
        controller_client = ControllerClient(session, self.config.secret)
        peer = PeerClient(session, self.config.secret)
        logs = LogManager(self.data_dir / "tablets", FileCache())
        replicas = ReplicaManager(
            self.spec.id,
            self.incarnation,
            self.config.replica_settings(),
            logs,
            peer,
            report_unreachable=self._report_unreachable,
            hand_off=self._hand_off,
        )
        controller = Controller(
            store, self.spec.id, self.config.controller_settings(), controller_client.probe
        )
        self.ctx = ctx = NodeContext(
            config=self.config,
            spec=self.spec,
            incarnation=self.incarnation,
            store=store,
            replicas=replicas,
            controller=controller,
            controller_client=controller_client,
            peer=peer,
            session=session,
            metrics=NodeMetrics(),
        )
        store.subscribe(lambda view: replicas.on_view(view, complete=store.ready))
        heartbeater = Heartbeater(
            store,
            self.spec.id,
            self.incarnation,
            self.spec.api_address,
            self.config.heartbeat_settings(),
            controller_client,
        )
        isr = IsrMaintainer(replicas, self._alter_isr, self.config.tuning.replica_lag_max_ms / 1000)
        # Long polls and replication streams would hold a graceful stop for the default 60 s.
        self._runner = web.AppRunner(
            build_app(ctx),
            access_log=None,
            handle_signals=False,
            shutdown_timeout=SHUTDOWN_TIMEOUT_S,
        )
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, self.spec.bind_host, self.spec.api_port, reuse_address=True, backlog=1024
        )
        await site.start()
        for name, coro in (
            ("controller", controller.run()),
            ("heartbeat", heartbeater.run()),
            ("isr", isr.run()),
            ("housekeeping", run_housekeeping(replicas)),
            ("scrubber", Scrubber(replicas).run()),
            ("ready-view", self._apply_view_when_ready(store, replicas)),
        ):
            self._tasks.append(asyncio.create_task(self._supervise(name, coro), name=name))
        log.info(
            "node %s (incarnation %d) serving http://%s:%d, raft on %s:%d",
            self.spec.id,
            self.incarnation,
            self.spec.bind_host,
            self.spec.api_port,
            self.spec.bind_host,
            self.spec.raft_port,
        )

    async def _apply_view_when_ready(self, store: MetadataStore, replicas: ReplicaManager) -> None:
        """Once the map is complete, reconcile again so stale local replicas get deleted."""
        await store.wait_for(lambda _v: store.ready, timeout_s=3600 * 24 * 365)
        replicas.on_view(store.view, complete=True)

    async def _supervise(self, name: str, coro: object) -> None:
        try:
            await coro  # type: ignore[misc]
        except asyncio.CancelledError:
            raise
        except Exception:  # the root of a task: a crash here is a bug; stop the node loudly
            log.exception("background task %s crashed; stopping the node", name)
            self._stopped.set()

    async def _report_unreachable(self, node_id: str) -> None:
        ctx = self.ctx
        assert ctx is not None
        try:
            controller = ctx.active_controller()
        except NotController:
            return  # no controller is known to tell
        await controller.report_unreachable(self.spec.id, node_id)

    async def _alter_isr(self, leader: TabletLeader, isr: tuple[str, ...]) -> TabletInfo:
        ctx = self.ctx
        assert ctx is not None
        info = leader.info
        return await ctx.active_controller().alter_isr(
            info.log, info.index, self.spec.id, info.leader_epoch, info.version, list(isr)
        )

    async def _hand_off(self, info: TabletInfo, successor: str) -> TabletInfo:
        """Ask the controller to move a tablet's leadership to ``successor``."""
        ctx = self.ctx
        assert ctx is not None
        return await ctx.active_controller().elect_leader(
            info.log, info.index, info.leader_epoch, successor
        )

    async def wait_closed(self) -> None:
        await self._stopped.wait()

    def request_stop(self) -> None:
        self._stopped.set()

    async def stop(self) -> None:
        """Graceful shutdown: stop serving, stop background work, close every log."""
        ctx = self.ctx
        if ctx is not None:
            await self._hand_off_leadership(ctx)
        # Background work stops before the listener: a controller that no longer accepts
        # heartbeats must not go on judging liveness (it would fence every other node).
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if ctx is not None:
            await ctx.controller.close()
        if self._runner is not None:
            await self._runner.cleanup()
        if ctx is not None:
            await ctx.replicas.close()
            ctx.store.close()
            await ctx.session.close()
        log.info("node %s stopped", self.spec.id)

    async def _hand_off_leadership(self, ctx: NodeContext) -> None:
        """Controlled shutdown: ask the controller to move our tablets to other ISR members."""
        led = [lead.info for lead in ctx.replicas.leaders.values() if not lead.closed]
        if not led:
            return
        try:
            async with asyncio.timeout(3):
                for info in led:
                    successor = next((r for r in info.isr if r != self.spec.id), None)
                    if successor is None:
                        continue
                    try:
                        controller = ctx.active_controller()
                    except NotController:
                        continue
                    await controller.elect_leader(
                        info.log, info.index, info.leader_epoch, successor
                    )
        except (TimeoutError, ReplicationError) as exc:
            log.warning("controlled shutdown incomplete: %s", exc)


def _next_incarnation(path: Path) -> int:
    """A number larger than any earlier process of this node used, even if the clock went
    back: the map ignores registrations from older incarnations."""
    lines = read_checkpoint(path, INCARNATION_FILE)
    last = int(lines[0]) if lines and lines[0].isdigit() else 0
    incarnation = max(time.time_ns(), last + 1)
    write_checkpoint(path, INCARNATION_FILE, [str(incarnation)])
    return incarnation
