"""The controller: the Raft leader's duties (placement, liveness, failover), in one object.

:class:`Controller` is what the node runs and calls; it implements
:class:`replication.controller_client.ControllerApi`, as the controller of another node reached
over HTTP does. Its parts, by responsibility:

* :mod:`replication.controller_role` — the claimed term, whether this node is active, and
  confirmed commands (why a command's success is trusted only under the claim's term);
* :mod:`replication.controller_liveness` — heartbeats, registration, probes, fencing,
  preferred-leader moves;
* :mod:`replication.controller_changes` — the changes others request: create and delete logs,
  alter an ISR, move leadership, commit offsets.

:meth:`Controller.run` is the loop: while the local node is Raft leader it claims the role for
the current Raft term, then runs a liveness round every tick; when it stops being leader it
gives the role up. Each public method raises :class:`NotController` unless this node is the
active controller.

Event-loop thread only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from replication.controller_changes import MapChanges
from replication.controller_liveness import LivenessKeeper, Probe
from replication.controller_role import ControllerRole
from replication.errors import ReplicationError
from replication.log_settings import LogSettings
from replication.metadata import MetadataStore
from replication.model import TabletInfo
from replication.settings import ControllerSettings

log = logging.getLogger(__name__)

__all__ = ["Controller"]


class Controller:
    """Controller duties of this node; the HTTP layer and the node call the public coroutines."""

    def __init__(
        self,
        store: MetadataStore,
        node_id: str,
        settings: ControllerSettings,
        probe: Probe,
        clock: Callable[[], float] = time.monotonic,
        *,
        tick_s: float = 0.1,
        rebalance_after_s: float | None = 10.0,
    ) -> None:
        """``probe``: how a suspected node is checked (``ControllerClient.probe``);
        ``rebalance_after_s``: hand a tablet back to its preferred leader once that replica
        has been alive, heartbeating and in the ISR this long (None: never)."""
        self.store = store
        self.node_id = node_id
        self._tick_s = tick_s
        self._role = ControllerRole(store, node_id)
        self._liveness = LivenessKeeper(
            self._role, settings, probe, clock, rebalance_after_s=rebalance_after_s
        )
        self._changes = MapChanges(self._role, self._liveness.tracker, clock)

    # ------------------------------------------------------------------ role and loop

    @property
    def is_active(self) -> bool:
        """Whether this node is the controller now: Raft leader in the term it claimed."""
        return self._role.is_active

    @property
    def term(self) -> int | None:
        """The controller term claimed by this node (None if it never became active)."""
        return self._role.term

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
            if self._role.term is not None:
                log.info("node %s is no longer the controller (term %d)", self.node_id, self.term)
                self._role.deactivate()
            return
        if not self.is_active:
            term = self.store.raft_term()
            view = await self._role.claim(term)
            if view is not None:
                log.info("node %s is the controller for term %d", self.node_id, term)
                self._liveness.start_term(view)
            return
        await self._liveness.check()

    async def close(self) -> None:
        """Cancel background work (registrations, probes)."""
        await self._role.close()

    # ------------------------------------------------------------------ requested changes

    async def create_log(self, name: str, settings: LogSettings) -> list[TabletInfo]:
        """Place and create a log; returns its tablets. Raises AlreadyExists, InvalidRequest."""
        return await self._changes.create_log(name, settings)

    async def delete_log(self, name: str) -> None:
        await self._changes.delete_log(name)

    async def alter_isr(
        self,
        log_name: str,
        tablet: int,
        leader: str,
        leader_epoch: int,
        version: int,
        isr: Sequence[str],
    ) -> TabletInfo:
        """Compare-and-set a tablet's ISR for its leader; see ``MapChanges.alter_isr``."""
        return await self._changes.alter_isr(log_name, tablet, leader, leader_epoch, version, isr)

    async def elect_leader(
        self, log_name: str, tablet: int, leader_epoch: int, new_leader: str
    ) -> TabletInfo:
        """Move leadership to an alive ISR member (controlled shutdown, preferred leader)."""
        return await self._changes.elect_leader(log_name, tablet, leader_epoch, new_leader)

    async def commit_offsets(self, group: str, offsets: Sequence[Sequence[Any]]) -> None:
        await self._changes.commit_offsets(group, offsets)

    # ------------------------------------------------------------------ liveness

    async def handle_heartbeat(self, node: str, incarnation: int, address: str) -> dict[str, Any]:
        """Record that ``node`` is alive; see ``LivenessKeeper.handle_heartbeat``."""
        return await self._liveness.handle_heartbeat(node, incarnation, address)

    async def report_unreachable(self, reporter: str, node: str) -> dict[str, Any]:
        """A follower could not connect to ``node``: probe it, fence it if nothing listens."""
        return await self._liveness.report_unreachable(reporter, node)
