"""The controller: the Raft leader's duties (placement, liveness, failover) and node heartbeats.

**Who is controller.** While the local node is Raft leader, :meth:`Controller.run` claims the
controller role for the current Raft term (``claim_controller`` command) and is *active* once
the claim is applied and this node is still leader in that term. Every later command carries
that term, so commands of a deposed controller are no-ops in the map.

**Confirmed effects.** Commands go through :meth:`ControllerCore._command`
(``replication.controller_core``): a command's result is trusted only if, after it was applied
here, this node is still Raft leader in the claim's term; otherwise the outcome is unknown
(:class:`MetadataTimeout`).

**Liveness.** Nodes heartbeat the controller over HTTP; it keeps monotonic last-seen times (no
Raft traffic per heartbeat). A new controller starts every timer at its claim, i.e. gives every
node one full session timeout. A node silent for ``session_timeout_ms`` is fenced. Faster: a
node whose heartbeat is late, or that a follower reports unreachable, is probed
(``GET /healthz``); a *refused* connection means no process listens, and it is fenced at once.
A heartbeat from a dead node or a new incarnation registers it again.

Event-loop thread only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from node.config import LogSettings
from replication.commands import (
    AlterIsr,
    ClaimController,
    CommitOffsets,
    CreateLog,
    DeleteLog,
    ElectLeader,
    FenceNode,
    RegisterNode,
)
from replication.controller_core import COMMAND_TIMEOUT_S, ControllerCore, error_for_rejection
from replication.errors import (
    AlreadyExists,
    CommandRejected,
    InvalidRequest,
    ReplicationError,
    UnknownLog,
)
from replication.heartbeat import Heartbeater
from replication.model import ClusterView, TabletInfo
from replication.placement import place_replicas

log = logging.getLogger(__name__)

__all__ = ["Controller", "Heartbeater", "error_for_rejection"]

PROBE_TIMEOUT_S = 0.5


class Controller(ControllerCore):
    """Controller duties of this node; the HTTP layer calls the public coroutines.

    Each public method raises :class:`NotController` unless this node is the active controller.
    """

    # ------------------------------------------------------------------ role

    async def run(self) -> None:
        """Background task: claim the role while Raft leader, then watch liveness."""
        while True:
            try:
                await self.step()
            except ReplicationError as exc:
                log.warning("controller step failed: %s", exc)
            await asyncio.sleep(self._tick_s)

    async def step(self) -> None:
        """One round of :meth:`run` (exposed for tests)."""
        if not self.store.is_raft_leader():
            if self._term is not None:
                log.info("node %s is no longer the controller (term %d)", self.node_id, self._term)
                self._deactivate()
            return
        if not self.is_active:
            await self._claim(self.store.raft_term())
            return
        await self._check_liveness()

    async def _claim(self, term: int) -> None:
        async with self._lock:
            result = await self.store.propose(
                ClaimController(self.node_id, term), COMMAND_TIMEOUT_S
            )
            if not result.ok:
                log.warning("controller claim for term %d rejected: %s", term, result)
                return
            view = self.store.view
            confirmed = view.controller == self.node_id and view.controller_term == term
            if not (confirmed and self._still_leader(term)):
                return
            self._term = term
            self._liveness.reset(view, self._clock())
        log.info("node %s is the controller for term %d", self.node_id, term)
        # The previous controller may have died with this election: find dead nodes now
        # rather than a session timeout later.
        for node in view.nodes.values():
            if node.alive and node.id != self.node_id:
                self._spawn(f"probe:{node.id}", self._probe_and_fence(node.id, "new controller"))

    # ------------------------------------------------------------------ commands

    async def create_log(self, name: str, settings: LogSettings) -> list[TabletInfo]:
        """Place and create a log; returns its tablets. Raises AlreadyExists, InvalidRequest."""
        term = self._require_active()
        if name in self.store.view.logs:
            raise AlreadyExists(f"log {name!r} already exists")
        view = await self._settled_view()
        try:
            assignments = place_replicas(
                view.live_nodes(),
                list(view.nodes),
                [t.replicas for t in view.tablets.values()],
                settings.tablets,
                settings.replication_factor,
            )
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from None
        result, _ = await self._command(
            CreateLog(term, name, settings.to_dict(), tuple(map(tuple, assignments)))
        )
        if not result.ok:
            raise error_for_rejection(result)
        return list(self.store.view.tablets_of(name))

    async def _settled_view(self) -> ClusterView:
        """The view to place replicas by: right after the claim (cluster start, failover),
        wait up to one session timeout for every node to register, so that a log created
        while nodes are still starting is not piled onto the first ones."""
        live = self._liveness
        remaining_s = live.active_since + live.session_timeout_s - self._clock()
        view = self.store.view
        if remaining_s <= 0 or all(n.alive for n in view.nodes.values()):
            return view
        with contextlib.suppress(TimeoutError):
            await self.store.wait_for(lambda v: all(n.alive for n in v.nodes.values()), remaining_s)
        self._require_active()
        return self.store.view

    async def delete_log(self, name: str) -> None:
        term = self._require_active()
        if name not in self.store.view.logs:
            raise UnknownLog(f"no log named {name!r}")
        result, retried = await self._command(DeleteLog(term, name))
        if not result.ok and not (retried and result.error == "not_found"):
            raise error_for_rejection(result)

    async def alter_isr(
        self,
        log_name: str,
        tablet: int,
        leader: str,
        leader_epoch: int,
        version: int,
        isr: Sequence[str],
    ) -> TabletInfo:
        """Compare-and-set a tablet's ISR for its leader. The leader must not act on the new
        ISR unless this returns; raises StaleEpoch/StaleVersion when the CAS fails."""
        term = self._require_active()
        cmd = AlterIsr(term, log_name, tablet, leader, leader_epoch, version, tuple(isr))
        result, retried = await self._command(cmd)
        current = self._tablet_or_raise(log_name, tablet)
        if result.ok:
            return current
        done = (
            current.leader == leader
            and current.leader_epoch == leader_epoch
            and set(current.isr) == set(isr)
            and current.version == version + 1
        )
        if retried and done:  # our earlier attempt applied it
            return current
        raise error_for_rejection(result)

    async def elect_leader(
        self, log_name: str, tablet: int, leader_epoch: int, new_leader: str
    ) -> TabletInfo:
        """Move leadership to an alive ISR member (controlled shutdown, preferred leader)."""
        term = self._require_active()
        result, retried = await self._command(
            ElectLeader(term, log_name, tablet, leader_epoch, new_leader)
        )
        current = self._tablet_or_raise(log_name, tablet)
        if result.ok:
            return current
        if retried and current.leader == new_leader and current.leader_epoch == leader_epoch + 1:
            return current
        raise error_for_rejection(result)

    async def commit_offsets(self, group: str, offsets: Sequence[Sequence[Any]]) -> None:
        self._require_active()
        cmd = CommitOffsets(group, tuple((str(o[0]), int(o[1]), int(o[2])) for o in offsets))
        result, _ = await self._command(cmd)
        if not result.ok:
            raise error_for_rejection(result)

    # ------------------------------------------------------------------ liveness

    async def handle_heartbeat(self, node: str, incarnation: int, address: str) -> dict[str, Any]:
        """Record that ``node`` (process ``incarnation``) is alive at API ``address``.

        Registers it (in the background, one at a time per node) when the map has it dead or
        at another incarnation; raises CommandRejected for an incarnation older than the map's
        (a message from a process that has since been replaced).
        """
        term = self._require_active()
        if node not in self.store.view.nodes:
            raise InvalidRequest(f"node {node!r} is not in the cluster config")
        known = self.store.view.nodes[node]
        if incarnation < known.incarnation:
            raise CommandRejected(
                "stale_incarnation", f"{node} already runs incarnation {known.incarnation}"
            )
        self._liveness.heard_from(node, self._clock())
        current = known.alive and known.incarnation == incarnation and known.address == address
        if not current:
            self._spawn(f"register:{node}", self._register(node, incarnation, address))
        return {"controller": self.node_id, "term": term, "registered": current}

    async def _register(self, node: str, incarnation: int, address: str) -> None:
        term = self._require_active()
        result, _ = await self._command(RegisterNode(term, node, address, incarnation))
        if result.ok:
            self._liveness.registered(node, self._clock())
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
        self._require_active()
        info = self.store.view.nodes.get(node)
        if info is None or not info.alive or node == self.node_id:
            return {"fenced": False}
        fenced = await self._probe_and_fence(node, f"reported unreachable by {reporter}")
        return {"fenced": fenced}

    async def _check_liveness(self) -> None:
        now = self._clock()
        if self._liveness.check_stall(now):
            log.warning("controller %s was stalled; liveness timers restarted", self.node_id)
        self._liveness.heard_from(self.node_id, now)  # this process is evidently alive
        view = self.store.view
        for node in self._liveness.expired(view, now):
            silent_s = self._liveness.silent_s(node.id, now)
            await self._fence(
                node.id, node.incarnation, f"silent for {silent_s:.1f} s (session timeout)"
            )
        for node_id in self._liveness.to_probe(view, now):
            self._spawn(f"probe:{node_id}", self._probe_and_fence(node_id, "late heartbeat"))
        tablet = self._liveness.rebalance_candidate(self.store.view, now)
        if tablet is not None:
            await self._move_to_preferred(tablet)

    async def _move_to_preferred(self, tablet: TabletInfo) -> None:
        term = self._require_active()
        cmd = ElectLeader(term, tablet.log, tablet.index, tablet.leader_epoch, tablet.replicas[0])
        result, _ = await self._command(cmd)
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
        self._liveness.probed(node, self._clock())
        if not await self._http.probe(info.address, PROBE_TIMEOUT_S):
            return False
        return await self._fence(node, info.incarnation, f"{reason}; connection refused")

    async def _fence(self, node: str, incarnation: int, reason: str) -> bool:
        term = self._require_active()
        result, _ = await self._command(FenceNode(term, node, incarnation))
        if not result.ok:
            log.info("fencing %s refused: %s", node, result)
            return False
        self._liveness.fenced(node)
        log.warning(
            "fenced %s (incarnation %d): %s; %d tablets changed",
            node,
            incarnation,
            reason,
            result.tablets_changed,
        )
        return True
