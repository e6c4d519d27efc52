"""Node side of liveness: heartbeats to the controller (see ``replication.controller_liveness``)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from replication.controller_client import ControllerClient
from replication.errors import NotController, PeerUnreachable, ReplicationError
from replication.metadata import MetadataStore
from replication.model import ClusterView
from replication.settings import HeartbeatSettings

log = logging.getLogger(__name__)


class Heartbeater:
    """Node side of liveness: every ``heartbeat_interval_ms``, tell the controller we live.

    The target is the controller the view names, falling back to the Raft leader (a new
    controller may not have claimed yet) and following a ``NotController`` hint. Event-loop
    thread only.
    """

    def __init__(
        self,
        store: MetadataStore,
        node_id: str,
        incarnation: int,
        api_address: str,
        settings: HeartbeatSettings,
        http: ControllerClient,
    ) -> None:
        self._store = store
        self._node_id = node_id
        self._incarnation = incarnation
        self._api_address = api_address
        self._api_addresses = settings.api_addresses
        self._http = http
        self._interval_s = settings.heartbeat_interval_ms / 1000
        self._timeout_s = max(self._interval_s, min(1.0, settings.session_timeout_ms / 3000))
        self._hint: str | None = None
        self._failed: str | None = None
        self.last_reply: dict[str, Any] | None = None

    async def run(self) -> None:
        """Background task; never returns."""
        next_at = time.monotonic()
        while True:
            await self.beat_once()
            next_at = max(next_at + self._interval_s, time.monotonic())
            await asyncio.sleep(next_at - time.monotonic())

    def _target(self, view: ClusterView) -> str | None:
        leader = self._store.raft_leader_id()
        if self._hint is not None:
            return self._hint
        if view.controller is not None and view.controller != self._failed:
            return view.controller
        return leader or view.controller

    async def beat_once(self) -> bool:
        """One heartbeat; True if the controller took it."""
        view = self._store.view
        target = self._target(view)
        self._hint = None
        if target is None:
            return False
        node = view.nodes.get(target)
        address = node.address if node else self._api_addresses[target]
        try:
            self.last_reply = await self._http.heartbeat(
                address, self._node_id, self._incarnation, self._api_address, self._timeout_s
            )
        except NotController as exc:
            self._hint = exc.controller if exc.controller != target else None
            self._failed = target
            return False
        except (PeerUnreachable, ReplicationError) as exc:
            log.debug("heartbeat to %s failed: %s", target, exc)
            self._failed = target
            return False
        self._failed = None
        return True
