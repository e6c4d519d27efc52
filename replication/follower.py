"""Follower side: one long-polling fetch loop per leader node, covering all its tablets there.

For every tablet it follows, the loop first reconciles its log with the leader's (Kafka
KIP-101/279): it asks the leader for the end offset of its own latest epoch and truncates what
lies beyond the smaller of the two ends for that epoch. Then it fetches from its end offset,
appends the bytes verbatim (CRCs checked by storage), waits until they are durable per the
log's fsync policy, and only then asks for more — so the next fetch offset it sends is its
acknowledgement. Its high watermark is ``min(leader's, own end offset)``.

Event-loop thread only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from replication.errors import PeerUnreachable
from replication.model import TabletId
from replication.peer_client import PeerClient, PeerError
from replication.protocol import (
    FENCED_LEADER_EPOCH,
    OFFSET_OUT_OF_RANGE,
    FetchPosition,
    FetchRequest,
    ProtocolError,
    TabletFetchResult,
)
from storage.errors import CorruptBatch, NonContiguousAppend, StorageError
from storage.group_commit import GroupCommitter
from storage.log import TabletLog

log = logging.getLogger(__name__)

BACKOFF_S = 0.05
FENCED_BACKOFF_S = 0.2


@dataclass(slots=True)
class FollowedTablet:
    """A tablet this node follows, at the leader epoch its metadata names."""

    tablet: TabletId
    log: TabletLog
    committer: GroupCommitter
    leader_epoch: int
    needs_truncation: bool = True
    paused_until_s: float = 0.0
    removed: bool = False


ReportUnreachable = Callable[[str], Awaitable[None]]


class LeaderFetcher:
    """Fetches every followed tablet led by one node (``leader_id`` at ``address``)."""

    def __init__(
        self,
        node_id: str,
        leader_id: str,
        address: str,
        peer: PeerClient,
        *,
        wait_ms: int,
        request_timeout_s: float,
        max_bytes: int = 8 * 1024 * 1024,
        report_unreachable: ReportUnreachable | None = None,
    ) -> None:
        self.node_id = node_id
        self.leader_id = leader_id
        self.address = address
        self._peer = peer
        self._wait_ms = wait_ms
        self._timeout_s = request_timeout_s
        self._max_bytes = max_bytes
        self._report_unreachable = report_unreachable
        self.tablets: dict[TabletId, FollowedTablet] = {}
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_report_s = 0.0
        self.fetches = 0

    # ------------------------------------------------------------------ membership

    def follow(self, followed: FollowedTablet) -> None:
        old = self.tablets.get(followed.tablet)
        if old is not None:
            old.removed = True
        self.tablets[followed.tablet] = followed
        self._changed.set()

    def unfollow(self, tablet: TabletId) -> FollowedTablet | None:
        followed = self.tablets.pop(tablet, None)
        if followed is not None:
            followed.removed = True
        self._changed.set()
        return followed

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"fetch-from-{self.leader_id}")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    # ------------------------------------------------------------------ loop

    async def _run(self) -> None:
        while True:
            try:
                if not self.tablets:
                    self._changed.clear()
                    await self._changed.wait()
                    continue
                await self._round()
            except asyncio.CancelledError:
                raise
            except PeerUnreachable as exc:
                await self._on_unreachable(exc)
            except (PeerError, ProtocolError) as exc:
                log.warning("fetch from %s failed: %s", self.leader_id, exc)
                await self._idle(BACKOFF_S)
            except Exception:  # the root of a task: log, back off, go on
                log.exception("fetch loop from %s crashed; restarting it", self.leader_id)
                await self._idle(1.0)

    async def _round(self) -> None:
        pending = [f for f in self.tablets.values() if f.needs_truncation and not f.removed]
        if pending:
            await asyncio.gather(*(self._reconcile(f) for f in pending))
        now = time.monotonic()
        active = [f for f in self.tablets.values()
                  if not f.needs_truncation and f.paused_until_s <= now]
        if not active:
            await self._idle(BACKOFF_S)
            return
        request = FetchRequest(
            replica=self.node_id,
            wait_ms=self._wait_ms,
            max_bytes=self._max_bytes,
            positions=tuple(
                FetchPosition(f.tablet.log, f.tablet.index, f.leader_epoch,
                              f.log.end_offset, f.log.high_watermark)
                for f in active
            ),
        )
        results = await self._peer.fetch(
            self.address, request, self._timeout_s + self._wait_ms / 1000
        )
        self.fetches += 1
        await self._apply(active, results)

    async def _apply(self, asked: list[FollowedTablet], results: list[TabletFetchResult]) -> None:
        by_id = {f.tablet: f for f in asked}
        durable: list[tuple[FollowedTablet, int, TabletFetchResult]] = []
        for result in results:
            followed = by_id.get(TabletId(result.log, result.tablet))
            if followed is None or followed.removed:
                continue
            if result.error is not None:
                self._on_error(followed, result)
                continue
            if len(result.data):
                try:
                    appended = followed.log.append_as_follower(result.data)
                except NonContiguousAppend:
                    followed.needs_truncation = True
                    continue
                except CorruptBatch as exc:
                    log.warning("corrupt bytes from %s for %s: %s; fetching again",
                                self.leader_id, followed.tablet, exc)
                    continue
                durable.append((followed, appended.end_offset, result))
            else:
                self._advance_high_watermark(followed, result)
        if durable:
            await asyncio.gather(*(f.committer.wait_durable(end) for f, end, _ in durable))
            for followed, _, result in durable:
                if not followed.removed:
                    self._advance_high_watermark(followed, result)

    @staticmethod
    def _advance_high_watermark(followed: FollowedTablet, result: TabletFetchResult) -> None:
        hw = min(result.high_watermark, followed.log.end_offset)
        if hw > followed.log.high_watermark:
            followed.log.set_high_watermark(hw)

    def _on_error(self, followed: FollowedTablet, result: TabletFetchResult) -> None:
        now = time.monotonic()
        if result.error == OFFSET_OUT_OF_RANGE:
            if followed.log.end_offset < result.start_offset:
                log.info("%s: behind the leader's start offset %d; restarting the replica there",
                         followed.tablet, result.start_offset)
                followed.log.truncate_fully_and_start_at(result.start_offset)
            else:
                followed.needs_truncation = True
            return
        # Fenced: our metadata is older than the leader's (or the leader's is older, or it is no
        # longer the leader); the metadata map will move us. Retry slowly meanwhile.
        pause = FENCED_BACKOFF_S if result.error == FENCED_LEADER_EPOCH else BACKOFF_S
        followed.paused_until_s = now + pause

    async def _reconcile(self, followed: FollowedTablet) -> None:
        """Truncate a divergent tail before fetching (KIP-279, exclusive end offsets)."""
        tablet_log = followed.log
        latest = tablet_log.latest_epoch
        if latest is None or tablet_log.end_offset == tablet_log.start_offset:
            followed.needs_truncation = False
            return
        epoch, leader_end = await self._peer.epoch_end(
            self.address, followed.tablet.log, followed.tablet.index,
            followed.leader_epoch, latest, self._timeout_s,
        )
        if followed.removed:
            return
        if epoch < 0:
            # The leader knows no epoch at or before ours: nothing of ours is on its log.
            target = tablet_log.start_offset
        elif epoch == latest:
            target = min(leader_end, tablet_log.end_offset)
        else:
            _, own_end = tablet_log.end_offset_for_epoch(epoch)
            target = min(leader_end, own_end if own_end >= 0 else tablet_log.start_offset)
        if target < tablet_log.end_offset:
            log.info("%s: truncating divergent tail [%d, %d) (leader epoch %d ends at %d)",
                     followed.tablet, target, tablet_log.end_offset, epoch, leader_end)
            tablet_log.truncate_to(target)
        followed.needs_truncation = False

    async def _on_unreachable(self, exc: PeerUnreachable) -> None:
        now = time.monotonic()
        if exc.refused and self._report_unreachable is not None and now - self._last_report_s > 0.5:
            self._last_report_s = now
            try:
                await self._report_unreachable(self.leader_id)
            except (PeerUnreachable, PeerError, StorageError) as report_exc:
                log.debug("could not report %s unreachable: %s", self.leader_id, report_exc)
        await self._idle(BACKOFF_S if exc.refused else 2 * BACKOFF_S)

    async def _idle(self, seconds: float) -> None:
        """Wait ``seconds`` or until the followed set changes, whichever is first."""
        self._changed.clear()
        try:
            await asyncio.wait_for(self._changed.wait(), seconds)
        except TimeoutError:
            pass
