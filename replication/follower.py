"""Follower side: one long-polling fetch loop per leader node, covering all its tablets there.

For every tablet it follows, the loop first reconciles its log with the leader's (Kafka
KIP-101/279): it asks the leader for the end offset of its own latest epoch and truncates what
lies beyond the smaller of the two ends for that epoch (``replication.rules.divergence``).
Then, over one replication stream per leader node (see replication.protocol), it fetches from
its end offset, appends the bytes verbatim (CRCs checked by storage) and fetches again. What it
appended is fsynced by group commit: a small append (up to the committer's inline limit) right
away, before the next fetch, which then carries the new durable offset (the write waiting at
the leader needs exactly that fsync: measured ~0.1 ms less per acks=all write); a large one in
the executor while the next fetch is already out. When a flush completes after the fetch was
sent, the new durable offset goes in an ``A`` message. The leader counts only acknowledged
(durable) offsets. Its high watermark is ``min(leader's, own end offset)``
(``replication.rules.high_watermark``).

Event-loop thread only.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from replication.errors import PeerError, PeerUnreachable
from replication.model import TabletId
from replication.peer_client import PeerClient, ReplicationStream
from replication.protocol import (
    FENCED_LEADER_EPOCH,
    OFFSET_OUT_OF_RANGE,
    Ack,
    FetchPosition,
    FetchRequest,
    ProtocolError,
    TabletFetchResult,
)
from replication.rules.divergence import divergence_point, epoch_to_reconcile
from replication.rules.high_watermark import acknowledgeable_offset, follower_high_watermark
from replication.rules.taint import caught_up_with_leader
from storage.errors import NonContiguousAppend, StorageError
from storage.group_commit import GroupCommitter
from storage.log import TabletLog
from wire.errors import CorruptBatch, TabletLogError

log = logging.getLogger(__name__)


def durable_offset(tablet_log: TabletLog) -> int:
    """The end of what this replica may acknowledge (its log's fsync policy decides)."""
    return acknowledgeable_offset(
        tablet_log.config.fsync, tablet_log.flushed_offset, tablet_log.end_offset
    )


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
    acked_offset: int = 0  # the durable offset last reported to the leader
    #: Called when the replica holds everything its leader has committed.
    on_caught_up: Callable[[TabletId], None] | None = None


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
        self._stream: ReplicationStream | None = None
        self._ack_due: set[TabletId] = set()
        self._ack_task: asyncio.Task[None] | None = None
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
        """Replicate until cancelled. Every failure is logged and retried after a backoff;
        the handling of one failure can itself fail (reporting to a moving controller), so it
        happens outside the ``except`` clauses, under the same protection."""
        while True:
            unreachable: PeerUnreachable | None = None
            backoff_s = 0.0
            try:
                await self._replicate()
            except asyncio.CancelledError:
                raise
            except PeerUnreachable as exc:
                unreachable = exc
            except (PeerError, ProtocolError) as exc:
                log.warning("replication from %s failed: %s", self.leader_id, exc)
                backoff_s = BACKOFF_S
            except Exception:  # the root of a task: log, back off, go on
                log.exception("replication from %s crashed; restarting it", self.leader_id)
                backoff_s = 1.0
            try:
                if unreachable is not None:
                    await self._on_unreachable(unreachable)
                elif backoff_s:
                    await self._idle(backoff_s)
            except asyncio.CancelledError:
                raise
            except Exception:  # never let the loop die: a dead fetch loop stalls its tablets
                log.exception("handling a replication failure from %s failed", self.leader_id)
                await asyncio.sleep(1.0)

    async def _replicate(self) -> None:
        """One stream's life: wait for tablets, connect, fetch until it breaks."""
        if not self.tablets:
            self._changed.clear()
            await self._changed.wait()
            return
        stream = await self._peer.open_stream(self.address, self._timeout_s)
        self._stream = stream
        try:
            while self.tablets:
                await self._round(stream)
        finally:
            self._stream = None
            await stream.close()

    @property
    def alive(self) -> bool:
        """Whether the fetch loop runs (it only ends when closed)."""
        return self._task is not None and not self._task.done()

    async def _round(self, stream: ReplicationStream) -> None:
        pending = [f for f in self.tablets.values() if f.needs_truncation and not f.removed]
        if pending:
            await asyncio.gather(*(self._reconcile(f) for f in pending))
        now = time.monotonic()
        active = [
            f for f in self.tablets.values() if not f.needs_truncation and f.paused_until_s <= now
        ]
        if not active:
            await self._idle(BACKOFF_S)
            return
        positions = []
        for f in active:
            f.acked_offset = durable_offset(f.log)
            positions.append(
                FetchPosition(
                    f.tablet.log,
                    f.tablet.index,
                    f.leader_epoch,
                    f.log.end_offset,
                    f.acked_offset,
                    f.log.high_watermark,
                )
            )
        await stream.send_fetch(
            FetchRequest(self.node_id, self._wait_ms, self._max_bytes, tuple(positions))
        )
        results = await stream.receive_data(self._timeout_s + self._wait_ms / 1000)
        self.fetches += 1
        self._apply(active, results)

    def _apply(self, asked: list[FollowedTablet], results: list[TabletFetchResult]) -> None:
        """Append what came (verbatim, CRCs checked by storage); acks follow once durable."""
        by_id = {f.tablet: f for f in asked}
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
                    log.warning(
                        "corrupt bytes from %s for %s: %s; fetching again",
                        self.leader_id,
                        followed.tablet,
                        exc,
                    )
                    continue
                if followed.log.config.fsync == "always":  # else the next fetch acks it
                    followed.committer.on_durable(
                        appended.end_offset,
                        functools.partial(self._on_durable, followed),
                        eager=True,
                    )
            self._advance_high_watermark(followed, result)

    def _on_durable(self, followed: FollowedTablet, error: StorageError | None) -> None:
        """An fsync covering appended data finished: acknowledge it without waiting for the
        next fetch (coalesced: one ack message per loop iteration)."""
        if error is not None or followed.removed:
            return
        self._ack_due.add(followed.tablet)
        if self._ack_task is None or self._ack_task.done():
            self._ack_task = asyncio.get_running_loop().create_task(self._send_acks())

    async def _send_acks(self) -> None:
        await asyncio.sleep(0)  # let every fsync that finished in this iteration join in
        while self._ack_due:  # fsyncs that finish while we send are acknowledged next
            due, self._ack_due = self._ack_due, set()
            acks = []
            for tablet in due:
                followed = self.tablets.get(tablet)
                if followed is None or followed.removed:
                    continue
                durable = durable_offset(followed.log)
                if durable > followed.acked_offset:
                    followed.acked_offset = durable
                    acks.append(Ack(tablet.log, tablet.index, followed.leader_epoch, durable))
            stream = self._stream
            if not acks or stream is None or stream.closed:
                continue
            try:
                await stream.send_acks(self.node_id, acks)
            except PeerUnreachable:
                return  # the fetch loop reconnects; its next fetch carries the durable offsets

    @staticmethod
    def _advance_high_watermark(followed: FollowedTablet, result: TabletFetchResult) -> None:
        tablet_log = followed.log
        hw = follower_high_watermark(
            tablet_log.high_watermark, result.high_watermark, tablet_log.end_offset
        )
        if hw > tablet_log.high_watermark:
            tablet_log.set_high_watermark(hw)
        if followed.on_caught_up is not None and caught_up_with_leader(
            tablet_log.end_offset, result.high_watermark
        ):
            followed.on_caught_up(followed.tablet)

    def _on_error(self, followed: FollowedTablet, result: TabletFetchResult) -> None:
        now = time.monotonic()
        if result.error == OFFSET_OUT_OF_RANGE:
            if followed.log.end_offset < result.start_offset:
                log.info(
                    "%s: behind the leader's start offset %d; restarting the replica there",
                    followed.tablet,
                    result.start_offset,
                )
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
        latest = epoch_to_reconcile(
            tablet_log.leader_epochs, tablet_log.start_offset, tablet_log.end_offset
        )
        if latest is None:
            followed.needs_truncation = False
            return
        epoch, leader_end = await self._peer.epoch_end(
            self.address,
            followed.tablet.log,
            followed.tablet.index,
            followed.leader_epoch,
            latest,
            self._timeout_s,
        )
        if followed.removed:
            return
        target = divergence_point(
            tablet_log.leader_epochs,
            tablet_log.start_offset,
            tablet_log.end_offset,
            epoch,
            leader_end,
        )
        if target < tablet_log.end_offset:
            log.info(
                "%s: truncating divergent tail [%d, %d) (leader epoch %d ends at %d)",
                followed.tablet,
                target,
                tablet_log.end_offset,
                epoch,
                leader_end,
            )
            tablet_log.truncate_to(target)
        followed.needs_truncation = False

    async def _on_unreachable(self, exc: PeerUnreachable) -> None:
        now = time.monotonic()
        if exc.refused and self._report_unreachable is not None and now - self._last_report_s > 0.5:
            self._last_report_s = now
            try:
                await self._report_unreachable(self.leader_id)
            except TabletLogError as report_exc:  # no controller right now, and the like
                log.debug("could not report %s unreachable: %s", self.leader_id, report_exc)
        await self._idle(BACKOFF_S if exc.refused else 2 * BACKOFF_S)

    async def _idle(self, seconds: float) -> None:
        """Wait ``seconds`` or until the followed set changes, whichever is first."""
        self._changed.clear()
        try:
            await asyncio.wait_for(self._changed.wait(), seconds)
        except TimeoutError:
            pass
