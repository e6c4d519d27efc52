"""The tablet replicas one node hosts, and their roles as the metadata map changes.

For every tablet the applied map places on this node, the manager keeps its log open and gives
it the role ``replication.rules.roles`` decides: **leader** (a :class:`TabletLeader`) when the
map names this node *and this process incarnation* as leader; **follower** of the named leader
(a tablet in that leader's :class:`LeaderFetcher`); or **offline** when there is no leader — or
when the replica is tainted (``replication.rules.taint``). Logs the map no longer holds are
deleted, but only once the map is known to be complete and has seen their creation.

Event-loop thread only. Metadata changes arrive through :meth:`on_view`, in order.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass

from replication.follower import FollowedTablet, LeaderFetcher
from replication.leader import TabletLeader
from replication.log_settings import LogSettings
from replication.model import ClusterView, LogInfo, TabletId, TabletInfo
from replication.peer_client import PeerClient
from replication.replica_health import HandOff, ReplicaHealth
from replication.rules.roles import (
    OFFLINE,
    Follow,
    Lead,
    Role,
    is_newer_creation,
    plan_roles,
    seen_by,
)
from replication.rules.taint import tainted_at_open
from replication.settings import ReplicaSettings
from storage.checkpoint import read_checkpoint, write_checkpoint
from storage.errors import CorruptSegment
from storage.group_commit import GroupCommitter
from storage.log import TabletLog
from storage.manager import LogManager

log = logging.getLogger(__name__)

ReportUnreachable = Callable[[str], Awaitable[None]]
LOG_ID_FILE = "log-id"


@dataclass(slots=True)
class Replica:
    """One tablet replica on this node: its log and group committer, whatever its role."""

    tablet: TabletId
    log: TabletLog
    committer: GroupCommitter
    settings: LogSettings
    log_id: str


class ReplicaManager:
    """Keeps local replicas in the roles the metadata map gives them."""

    def __init__(
        self,
        node_id: str,
        incarnation: int,
        settings: ReplicaSettings,
        logs: LogManager,
        peer: PeerClient,
        report_unreachable: ReportUnreachable | None = None,
        clock: Callable[[], float] = time.monotonic,
        hand_off: HandOff | None = None,
    ) -> None:
        self.node_id = node_id
        self.incarnation = incarnation
        self.settings = settings
        self.logs = logs
        self.peer = peer
        self._report_unreachable = report_unreachable
        self._clock = clock
        self.view: ClusterView | None = None
        self.replicas: dict[TabletId, Replica] = {}
        self.leaders: dict[TabletId, TabletLeader] = {}
        self.fetchers: dict[str, LeaderFetcher] = {}
        self._following: dict[TabletId, str] = {}
        self.corrupt_recoveries = 0
        self.health = ReplicaHealth(node_id, hand_off)
        self._closing: set[asyncio.Task[None]] = set()
        self._swept = False
        self.closed = False

    # ------------------------------------------------------------------ lookups

    def leader_for(self, tablet: TabletId) -> TabletLeader | None:
        """The leader state if this process leads ``tablet`` now."""
        leader = self.leaders.get(tablet)
        return None if leader is None or leader.closed else leader

    def replica(self, tablet: TabletId) -> Replica | None:
        return self.replicas.get(tablet)

    # ------------------------------------------------------------------ metadata changes

    def on_view(self, view: ClusterView, *, complete: bool) -> None:
        """Bring every local replica to the role ``view`` gives it.

        ``complete`` says the view reflects the whole committed map (the metadata store is
        ready); only then are replicas missing from it deleted.
        """
        if self.closed:
            return
        self.view = view
        local = {tablet: replica.log_id for tablet, replica in self.replicas.items()}
        plan = plan_roles(view, self.node_id, self.incarnation, local, complete=complete)
        for tablet, hosted in plan.hosted.items():
            try:
                replica = self._ensure_replica(tablet, hosted.log.settings, _log_id(hosted.log))
            except StaleView as exc:
                log.warning("%s", exc)
                continue
            if replica is not None:
                self._apply_role(replica, hosted.info, hosted.role, view)
        for tablet in plan.delete:
            self._drop_replica(tablet, delete=True)
        if complete and not self._swept:
            self._sweep_disk(view, plan.hosted)

    def _sweep_disk(self, view: ClusterView, wanted: Collection[TabletId]) -> None:
        """Delete replicas left on disk by logs deleted while this node was down.

        Only replicas whose log creation the view has seen (``rules.roles.seen_by``): a view
        that lags — a node replaying its metadata — must never make us delete data.
        """
        self._swept = True
        for log_name, index in self.logs.all_on_disk():
            tablet = TabletId(log_name, index)
            if tablet in wanted or tablet in self.replicas:
                continue
            log_id = self._local_log_id(tablet)
            if log_id is not None and seen_by(view, log_id):
                log.info(
                    "%s: its log (id %s) is gone from the map; deleting the local replica",
                    tablet,
                    log_id,
                )
                self.logs.delete_log(log_name, index)

    def _local_log_id(self, tablet: TabletId) -> str | None:
        directory = self.logs.directory_for(tablet.log, tablet.index)
        lines = read_checkpoint(directory / LOG_ID_FILE, LOG_ID_FILE)
        return lines[0] if lines else None

    def _ensure_replica(self, tablet: TabletId, settings: object, log_id: str) -> Replica | None:
        replica = self.replicas.get(tablet)
        if replica is not None and replica.log_id == log_id:
            return replica
        if replica is not None:  # the log was deleted and created again under the same name
            self._drop_replica(tablet, delete=True)
        merged = self.settings.log_defaults.merged(dict(settings))  # type: ignore[call-overload]
        storage_config = merged.storage_config()
        self._claim_directory(tablet, log_id)
        repair = self.health.take_repair(tablet)
        try:
            tablet_log = self.logs.open_log(
                tablet.log, tablet.index, storage_config, truncate_corrupt=repair
            )
        except CorruptSegment as exc:
            # Never serve corrupt bytes: cut the log before the damage; this replica then
            # re-fetches the rest from the leader (or stays out of the ISR until it has).
            log.error(  # noqa: TRY400 - the message says it all; no traceback wanted
                "%s: %s; truncating before it and re-syncing from the leader", tablet, exc
            )
            self.corrupt_recoveries += 1
            tablet_log = self.logs.open_log(
                tablet.log, tablet.index, storage_config, truncate_corrupt=True
            )
        if tainted_at_open(repair, tablet_log.lost_committed):
            self.health.taint(tablet, end_offset=tablet_log.end_offset)
        replica = Replica(tablet, tablet_log, GroupCommitter(tablet_log), merged, log_id)
        self.replicas[tablet] = replica
        return replica

    def on_corruption(self, tablet: TabletId, exc: CorruptSegment) -> None:
        """A read found a corrupt batch in a local replica: cut the log before it and fetch
        the rest again from the leader — unless this replica leads with no one to take over,
        when cutting would destroy the only copy of what follows the damage."""
        replica = self.replicas.get(tablet)
        if replica is None or self.view is None:
            return
        info = self.view.tablet(tablet.log, tablet.index)
        if info is not None and not self.health.may_repair(tablet, info, self.view):
            log.error(
                "%s: %s; this replica leads and no other in-sync replica is alive: "
                "keeping it (the damaged range stays unreadable)",
                tablet,
                exc,
            )
            return
        log.error("%s: %s; truncating before it and re-syncing from the leader", tablet, exc)
        self.corrupt_recoveries += 1
        self.health.request_repair(tablet)
        self._drop_replica(tablet, delete=False)
        self.on_view(self.view, complete=False)

    def _claim_directory(self, tablet: TabletId, log_id: str) -> None:
        """Make sure the tablet's directory holds this creation of the log, not an older one.

        A log deleted and created again while this node was down has the same name; its old
        replica must not be mistaken for the new one (offsets and epochs restart from zero,
        so truncation by epoch could not tell them apart).
        """
        directory = self.logs.directory_for(tablet.log, tablet.index)
        marker = directory / LOG_ID_FILE
        if directory.exists():
            found = self._local_log_id(tablet)
            if found == log_id:
                return
            if found is not None and is_newer_creation(found, log_id):
                raise StaleView(
                    f"{tablet}: the local replica belongs to log id {found}, newer "
                    f"than the map's {log_id}; waiting for the map to catch up"
                )
            log.warning(
                "%s: local replica belongs to another creation of the log (%s, now %s);"
                " deleting it",
                tablet,
                found,
                log_id,
            )
            shutil.rmtree(directory)
        directory.mkdir(parents=True, exist_ok=True)
        write_checkpoint(marker, LOG_ID_FILE, [log_id])

    def _apply_role(
        self, replica: Replica, info: TabletInfo, role: Role, view: ClusterView
    ) -> None:
        tablet = replica.tablet
        if isinstance(role, Lead) and not self.health.may_lead(tablet, info, view):
            role = OFFLINE  # tainted: offline until another replica takes over
        if isinstance(role, Lead):
            self._stop_following(tablet)
            current = self.leaders.get(tablet)
            if current is not None and current.leader_epoch == info.leader_epoch:
                current.update_info(info)
                return
            self._stop_leading(tablet)
            self.leaders[tablet] = TabletLeader(
                tablet,
                self.node_id,
                replica.log,
                replica.committer,
                info,
                replica.settings.min_insync_replicas,
                self._clock,
            )
            log.info("%s: leading at epoch %d (ISR %s)", tablet, info.leader_epoch, info.isr)
            return
        self._stop_leading(tablet)
        if not isinstance(role, Follow):
            self._stop_following(tablet)
            return
        current_leader = self._following.get(tablet)
        fetcher = self.fetchers.get(current_leader) if current_leader else None
        followed = fetcher.tablets.get(tablet) if fetcher else None
        if (
            current_leader == role.leader
            and followed is not None
            and followed.leader_epoch == role.leader_epoch
        ):
            return
        self._stop_following(tablet)
        fetcher = self._fetcher_for(role.leader, role.address)
        fetcher.follow(
            FollowedTablet(
                tablet,
                replica.log,
                replica.committer,
                role.leader_epoch,
                on_caught_up=self.health.caught_up,
            )
        )
        self._following[tablet] = role.leader

    def _fetcher_for(self, leader_id: str, address: str) -> LeaderFetcher:
        fetcher = self.fetchers.get(leader_id)
        if fetcher is not None and not fetcher.alive:
            log.error("the fetch loop from %s had ended; starting a new one", leader_id)
            for tablet in list(fetcher.tablets):
                self._following.pop(tablet, None)
            fetcher = None
        if fetcher is not None and fetcher.address != address:
            for tablet in list(fetcher.tablets):
                self._following.pop(tablet, None)
            self._closing.add(asyncio.get_running_loop().create_task(fetcher.close()))
            fetcher = None
        if fetcher is None:
            fetcher = LeaderFetcher(
                self.node_id,
                leader_id,
                address,
                self.peer,
                wait_ms=self.settings.fetch_wait_max_ms,
                request_timeout_s=self.settings.request_timeout_ms / 1000,
                report_unreachable=self._report_unreachable,
            )
            self.fetchers[leader_id] = fetcher
            fetcher.start()
        return fetcher

    def reconcile(self) -> None:
        """Apply the current view again (called periodically): retries what a view change
        could not finish — a refused hand-off, a fetch loop that had to be replaced."""
        self.revive_fetchers()
        if self.view is not None:
            self.on_view(self.view, complete=False)

    def revive_fetchers(self) -> None:
        """Replace fetch loops that ended (a bug: they retry everything) so their tablets do not
        stall; called periodically."""
        dead = [leader_id for leader_id, f in self.fetchers.items() if not f.alive]
        if not dead or self.view is None:
            return
        for leader_id in dead:
            log.error("the fetch loop from %s had ended; starting a new one", leader_id)
            for tablet in self.fetchers.pop(leader_id).tablets:
                self._following.pop(tablet, None)
        self.on_view(self.view, complete=False)

    def _stop_following(self, tablet: TabletId) -> None:
        leader_id = self._following.pop(tablet, None)
        if leader_id is not None and leader_id in self.fetchers:
            self.fetchers[leader_id].unfollow(tablet)

    def _stop_leading(self, tablet: TabletId) -> None:
        leader = self.leaders.pop(tablet, None)
        if leader is not None:
            leader.close()
            log.info("%s: no longer leading (was epoch %d)", tablet, leader.leader_epoch)

    def _drop_replica(self, tablet: TabletId, *, delete: bool) -> None:
        self._stop_following(tablet)
        self._stop_leading(tablet)
        replica = self.replicas.pop(tablet, None)
        if replica is None:
            return
        if delete:
            log.info("%s: deleting the local replica", tablet)
            replica.log.delete()
        else:
            replica.log.close()

    # ------------------------------------------------------------------ lifecycle

    async def close(self) -> None:
        """Stop every role, wait for in-flight fsyncs, checkpoint and close every log."""
        self.closed = True
        for fetcher in list(self.fetchers.values()):
            await fetcher.close()
        self.fetchers.clear()
        for tablet in list(self.leaders):
            self._stop_leading(tablet)
        for replica in self.replicas.values():
            await replica.committer.close()
            replica.log.close()
        self.replicas.clear()


class StaleView(Exception):
    """The applied map is older than what is on disk; act once it has caught up."""


def _log_id(log_info: LogInfo) -> str:
    """The identity of one creation of a log (so a re-created name never reuses old data)."""
    return str(log_info.log_id)
