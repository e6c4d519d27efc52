"""The map changes other components ask the controller for.

Creating and deleting logs (the admin API), compare-and-set of a tablet's ISR (its leader),
moving a tablet's leadership (controlled shutdown, a tainted leader handing off), committing
consumer offsets. Each checks that this node is the active controller, makes one confirmed
command through :class:`replication.controller_role.ControllerRole`, and recognises its own
earlier success when a retried compare-and-set fails. Event-loop thread only.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any

from replication.commands import AlterIsr, CommitOffsets, CreateLog, DeleteLog, ElectLeader
from replication.controller_role import ControllerRole, error_for_rejection
from replication.errors import AlreadyExists, InvalidRequest, UnknownLog
from replication.liveness import LivenessTracker
from replication.log_settings import LogSettings
from replication.model import ClusterView, TabletInfo
from replication.placement import place_replicas

__all__ = ["MapChanges"]


class MapChanges:
    """The controller's requested changes; each raises NotController unless it is active."""

    def __init__(
        self,
        role: ControllerRole,
        liveness: LivenessTracker,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``liveness`` tells how long ago the role was claimed, for placing a new log."""
        self._role = role
        self.store = role.store
        self._liveness = liveness
        self._clock = clock

    async def create_log(self, name: str, settings: LogSettings) -> list[TabletInfo]:
        """Place and create a log; returns its tablets. Raises AlreadyExists, InvalidRequest."""
        term = self._role.require_active()
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
        result, _ = await self._role.command(
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
        self._role.require_active()
        return self.store.view

    async def delete_log(self, name: str) -> None:
        term = self._role.require_active()
        if name not in self.store.view.logs:
            raise UnknownLog(f"no log named {name!r}")
        result, retried = await self._role.command(DeleteLog(term, name))
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
        term = self._role.require_active()
        cmd = AlterIsr(term, log_name, tablet, leader, leader_epoch, version, tuple(isr))
        result, retried = await self._role.command(cmd)
        current = self._role.tablet_or_raise(log_name, tablet)
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
        term = self._role.require_active()
        result, retried = await self._role.command(
            ElectLeader(term, log_name, tablet, leader_epoch, new_leader)
        )
        current = self._role.tablet_or_raise(log_name, tablet)
        if result.ok:
            return current
        if retried and current.leader == new_leader and current.leader_epoch == leader_epoch + 1:
            return current
        raise error_for_rejection(result)

    async def commit_offsets(self, group: str, offsets: Sequence[Sequence[Any]]) -> None:
        self._role.require_active()
        cmd = CommitOffsets(group, tuple((str(o[0]), int(o[1]), int(o[2])) for o in offsets))
        result, _ = await self._role.command(cmd)
        if not result.ok:
            raise error_for_rejection(result)
