"""The controller's liveness duty: register nodes that heartbeat, fence nodes that stop.

Nodes heartbeat the controller over HTTP; it keeps monotonic last-seen times (no Raft traffic
per heartbeat; the timers and decisions are :class:`replication.liveness.LivenessTracker`'s).
A new controller starts every timer at its claim, i.e. gives every node one full session
timeout. A node silent for ``session_timeout_ms`` is fenced. Faster: a node whose heartbeat is
late, or that a follower reports unreachable, is probed (``GET /healthz``); a *refused*
connection means no process listens, and it is fenced at once. A heartbeat from a dead node or
a new incarnation registers it again. Once a preferred replica is back and stable, leadership
is handed back to it, one tablet at a time.

Every command goes through :class:`replication.controller_role.ControllerRole`. Event-loop
thread only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from replication.commands import ElectLeader, FenceNode, RegisterNode
from replication.controller_role import ControllerRole
from replication.errors import CommandRejected, InvalidRequest
from replication.liveness import LivenessTracker
from replication.model import ClusterView, TabletInfo
from replication.settings import ControllerSettings

log = logging.getLogger("replication.controller")

__all__ = ["PROBE_TIMEOUT_S", "LivenessKeeper", "Probe"]

PROBE_TIMEOUT_S = 0.5

Probe = Callable[[str, float], Awaitable[bool]]
"""``probe(address, timeout_s)``: True iff a connection to ``address`` is actively refused
(``ControllerClient.probe``)."""


class LivenessKeeper:
    """Heartbeats, registrations, probes, fencing and preferred-leader moves of the controller."""

    def __init__(
        self,
        role: ControllerRole,
        settings: ControllerSettings,
        probe: Probe,
        clock: Callable[[], float] = time.monotonic,
        *,
        rebalance_after_s: float | None = 10.0,
    ) -> None:
        """``rebalance_after_s``: hand a tablet back to its preferred leader once that replica
        has been alive, heartbeating and in the ISR this long (None: never)."""
        self._role = role
        self.store = role.store
        self.node_id = role.node_id
        self._probe = probe
        self._clock = clock
        self.tracker = LivenessTracker(
            session_timeout_s=settings.session_timeout_ms / 1000,
            late_s=2 * settings.heartbeat_interval_ms / 1000,
            rebalance_after_s=rebalance_after_s,
        )

    def start_term(self, view: ClusterView) -> None:
        """The role was just claimed (``view`` confirms it): restart every timer, and probe
        every other alive node now — the previous controller may have died with this
        election; find dead nodes now rather than a session timeout later."""
        self.tracker.reset(view, self._clock())
        for node in view.nodes.values():
            if node.alive and node.id != self.node_id:
                self._role.spawn(
                    f"probe:{node.id}", self._probe_and_fence(node.id, "new controller")
                )

    async def handle_heartbeat(self, node: str, incarnation: int, address: str) -> dict[str, Any]:
        """Record that ``node`` (process ``incarnation``) is alive at API ``address``.

        Registers it (in the background, one at a time per node) when the map has it dead or
        at another incarnation; raises CommandRejected for an incarnation older than the map's
        (a message from a process that has since been replaced).
        """
        term = self._role.require_active()
        if node not in self.store.view.nodes:
            raise InvalidRequest(f"node {node!r} is not in the cluster config")
        known = self.store.view.nodes[node]
        if incarnation < known.incarnation:
            raise CommandRejected(
                "stale_incarnation", f"{node} already runs incarnation {known.incarnation}"
            )
        self.tracker.heard_from(node, self._clock())
        current = known.alive and known.incarnation == incarnation and known.address == address
        if not current:
            self._role.spawn(f"register:{node}", self._register(node, incarnation, address))
        return {"controller": self.node_id, "term": term, "registered": current}

    async def _register(self, node: str, incarnation: int, address: str) -> None:
        term = self._role.require_active()
        result, _ = await self._role.command(RegisterNode(term, node, address, incarnation))
        if result.ok:
            self.tracker.registered(node, self._clock())
            log.info(
                "registered %s incarnation %d at %s (%d tablets re-elected)",
                node,
                incarnation,
                address,
                result.tablets_changed,
            )
        else:
            log.info("registration of %s refused: %s", node, result)

    async def report_unreachable(self, reporter: str, node: str) -> dict[str, Any]:
        """A follower could not connect to ``node``: probe it, fence it if nothing listens."""
        self._role.require_active()
        info = self.store.view.nodes.get(node)
        if info is None or not info.alive or node == self.node_id:
            return {"fenced": False}
        fenced = await self._probe_and_fence(node, f"reported unreachable by {reporter}")
        return {"fenced": fenced}

    async def check(self) -> None:
        """One liveness round of the active controller: fence the expired, probe the late,
        move at most one tablet back to its preferred leader."""
        now = self._clock()
        if self.tracker.check_stall(now):
            log.warning("controller %s was stalled; liveness timers restarted", self.node_id)
        self.tracker.heard_from(self.node_id, now)  # this process is evidently alive
        view = self.store.view
        for node in self.tracker.expired(view, now):
            silent_s = self.tracker.silent_s(node.id, now)
            await self._fence(
                node.id, node.incarnation, f"silent for {silent_s:.1f} s (session timeout)"
            )
        for node_id in self.tracker.to_probe(view, now):
            self._role.spawn(f"probe:{node_id}", self._probe_and_fence(node_id, "late heartbeat"))
        tablet = self.tracker.rebalance_candidate(self.store.view, now)
        if tablet is not None:
            await self._move_to_preferred(tablet)

    async def _move_to_preferred(self, tablet: TabletInfo) -> None:
        term = self._role.require_active()
        cmd = ElectLeader(term, tablet.log, tablet.index, tablet.leader_epoch, tablet.replicas[0])
        result, _ = await self._role.command(cmd)
        log.info(
            "preferred leader %s for %s/%d: %s",
            tablet.replicas[0],
            tablet.log,
            tablet.index,
            "moved" if result.ok else result,
        )

    async def _probe_and_fence(self, node: str, reason: str) -> bool:
        info = self.store.view.nodes.get(node)
        if info is None or not info.alive:
            return False
        self.tracker.probed(node, self._clock())
        if not await self._probe(info.address, PROBE_TIMEOUT_S):
            return False
        return await self._fence(node, info.incarnation, f"{reason}; connection refused")

    async def _fence(self, node: str, incarnation: int, reason: str) -> bool:
        term = self._role.require_active()
        result, _ = await self._role.command(FenceNode(term, node, incarnation))
        if not result.ok:
            log.info("fencing %s refused: %s", node, result)
            return False
        self.tracker.fenced(node)
        log.warning(
            "fenced %s (incarnation %d): %s; %d tablets changed",
            node,
            incarnation,
            reason,
            result.tablets_changed,
        )
        return True
