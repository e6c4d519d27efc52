"""Leader side of one tablet: appends, follower positions, the high watermark, produce acks.

Offsets are exclusive ends throughout (see ``storage.log``): a follower's *fetch offset* is its
end offset, so it has every offset below it; the **high watermark is the minimum end offset
over the in-sync replicas** (the leader counting with its durable end offset), and an
``acks=all`` produce is answered once the high watermark reaches the end of its records.

Safety rests on three rules, decided in ``replication.rules`` and fed here:

* the in-sync set used for the high watermark is the one in the applied metadata, *plus*
  followers this leader has asked to add (a superset is always safe); a removal counts only
  once the controller confirmed it (``rules.high_watermark``);
* a follower's progress counts only for fetches at this leader's epoch;
* the leader's own position is its durable end (``flushed_offset``) when the log fsyncs always,
  so an acknowledged record is on disk on every in-sync replica.

When a follower is caught up or lagging is ``rules.isr``; a follower that lost committed records
leaves the ISR at once (``rules.taint``).

Not thread-safe: event-loop thread only.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

from replication.errors import NotEnoughReplicas, NotLeader, ReplicationTimeout
from replication.model import TabletId, TabletInfo
from replication.rules.high_watermark import (
    acknowledgeable_offset,
    high_watermark_restored,
    leader_high_watermark,
)
from replication.rules.isr import lagging_members, last_caught_up_s, rejoining_replicas
from replication.rules.taint import lost_committed_records
from storage.errors import StorageError
from storage.group_commit import GroupCommitter
from storage.log import TabletLog
from storage.results import AppendResult


@dataclass(slots=True)
class FollowerProgress:
    """What the leader knows of one follower, from its fetches and acks at the current epoch.

    ``fetch_offset`` is where it continues (its end offset); ``durable_offset`` what it
    acknowledged (written and, with ``fsync: always``, fsynced). Both None until it fetched at
    this epoch.
    """

    fetch_offset: int | None = None
    durable_offset: int | None = None
    high_watermark: int = 0
    last_fetch_s: float = 0.0
    last_caught_up_s: float = 0.0
    leader_end_at_last_fetch: int = 0


@dataclass(slots=True)
class _Waiter:
    end_offset: int
    future: asyncio.Future[None] = field(compare=False)


class TabletLeader:
    """Replication state of a tablet this node leads at ``leader_epoch``."""

    def __init__(
        self,
        tablet: TabletId,
        node_id: str,
        log: TabletLog,
        committer: GroupCommitter,
        info: TabletInfo,
        min_insync_replicas: int,
        clock: Callable[[], float],
    ) -> None:
        assert info.leader == node_id
        self.tablet = tablet
        self.node_id = node_id
        self.log = log
        self.committer = committer
        self.leader_epoch = info.leader_epoch
        self.info = info
        self.min_insync_replicas = min_insync_replicas
        self._clock = clock
        now = clock()
        self.followers: dict[str, FollowerProgress] = {
            r: FollowerProgress(last_caught_up_s=now) for r in info.replicas if r != node_id
        }
        self.pending_isr_additions: set[str] = set()
        self.alter_isr_in_flight = False
        self.closed = False
        self._waiters: list[tuple[int, int, _Waiter]] = []
        self._seq = itertools.count()
        self._data_waiters: set[asyncio.Future[None]] = set()
        self._hw_waiters: set[asyncio.Future[None]] = set()
        self._restored_waiters: set[asyncio.Future[None]] = set()
        #: First offset written at this epoch: a follower rejoins the ISR only once past it,
        #: so it has truncated any divergent tail from older epochs.
        self.epoch_start_offset = log.end_offset
        log.assign_epoch(self.leader_epoch, log.end_offset)
        # A leader alone in its ISR (RF 1, or after the others dropped out) owns the high
        # watermark: its durable end counts at once, not at the next write (after a restart
        # the log opens with its last checkpointed high watermark, which lags).
        self._advance_high_watermark()

    # ------------------------------------------------------------------ metadata

    @property
    def isr(self) -> tuple[str, ...]:
        return self.info.isr

    def hw_isr(self) -> set[str]:
        """Replicas whose position bounds the high watermark (applied ISR ∪ pending adds)."""
        return set(self.info.isr) | self.pending_isr_additions

    @property
    def hw_restored(self) -> bool:
        """Whether the high watermark is at least what any earlier leader exposed: every member
        of :meth:`hw_isr` has reported its position at this epoch (``rules.high_watermark.
        high_watermark_restored``). Reads and ``/readyz`` wait for it."""
        return high_watermark_restored(self.node_id, self.hw_isr(), self.followers)

    async def wait_restored(self, timeout_s: float) -> bool:
        """Park until :attr:`hw_restored` (or close, or ``timeout_s``); returns it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not self.hw_restored and not self.closed:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            await self._park(self._restored_waiters, remaining)
        return self.hw_restored and not self.closed

    def update_info(self, info: TabletInfo) -> None:
        """A newer applied version of this tablet at the same epoch (an ISR change)."""
        if info.leader_epoch != self.leader_epoch or info.version < self.info.version:
            return
        self.info = info
        self.pending_isr_additions -= set(info.isr)
        self._advance_high_watermark()

    # ------------------------------------------------------------------ produce

    def check_can_append(self, acks: str) -> None:
        """Fail fast before writing: closed leader, or too few in-sync replicas for acks=all."""
        if self.closed:
            raise NotLeader(f"{self.tablet.log}/{self.tablet.index}", None)
        if acks == "all" and len(self.info.isr) < self.min_insync_replicas:
            raise NotEnoughReplicas(
                f"tablet {self.tablet.log}/{self.tablet.index} has {len(self.info.isr)} in-sync "
                f"replicas, fewer than min_insync_replicas={self.min_insync_replicas}"
            )

    def append(self, batches: bytes | memoryview) -> AppendResult:
        """Write as leader (not yet durable nor replicated) and wake parked fetches."""
        result = self.log.append_as_leader(batches, self.leader_epoch)
        self._wake(self._data_waiters)
        # The leader's own position counts once durable: move the high watermark then, even
        # when no acks=all producer waits (acks=0/1 writes must still become readable).
        self.committer.on_durable(result.end_offset, self._on_durable)
        return result

    async def wait_acked(self, result: AppendResult, acks: str, timeout_s: float) -> None:
        """Wait until the write is acknowledged at level ``acks``.

        ``1``: durable on the leader (per its fsync policy); ``all``: the high watermark passed
        it, with at least ``min_insync_replicas`` in sync. Raises ReplicationTimeout (outcome
        unknown), NotLeader (leadership lost while waiting; outcome unknown) or
        NotEnoughReplicas (the ISR shrank below the minimum while waiting).
        """
        if acks == "0":
            return
        try:
            async with asyncio.timeout(timeout_s):
                await self.committer.wait_durable(result.end_offset)
                self._advance_high_watermark()
                if acks == "all":
                    await self._wait_high_watermark(result.end_offset)
        except TimeoutError:
            raise ReplicationTimeout(
                f"write to {self.tablet.log}/{self.tablet.index} not acknowledged within "
                f"{timeout_s:.1f} s; it may or may not have committed"
            ) from None
        if acks == "all" and len(self.info.isr) < self.min_insync_replicas:
            # Written, but on fewer replicas than promised: unknown, not "not written".
            raise ReplicationTimeout(
                "the in-sync set shrank below min_insync_replicas while the write waited; "
                "it may or may not be kept"
            )

    async def _wait_high_watermark(self, end_offset: int) -> None:
        if self.log.high_watermark >= end_offset:
            return
        if self.closed:  # the write is in the log: whether it commits is up to the new leader
            raise ReplicationTimeout(
                f"leadership of {self.tablet.log}/{self.tablet.index} changed before the write "
                "was acknowledged; it may or may not have committed"
            )
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (end_offset, next(self._seq), _Waiter(end_offset, future)))
        await future

    # ------------------------------------------------------------------ replication

    def on_fetch(
        self, replica: str, fetch_offset: int, durable_offset: int, follower_hw: int
    ) -> None:
        """Record a follower's position from a fetch at this epoch."""
        progress = self.followers.get(replica)
        if progress is None:
            return
        now = self._clock()
        leader_end = self.log.end_offset
        if lost_committed_records(progress.fetch_offset, fetch_offset, self.log.high_watermark):
            # Out of the ISR now, not after the lag timeout, so that it cannot be elected
            # before it has them again.
            progress.last_caught_up_s = float("-inf")
            progress.leader_end_at_last_fetch = leader_end
            progress.fetch_offset = progress.durable_offset = fetch_offset
            progress.last_fetch_s = now
            self._wake_if_restored()
            return
        progress.last_caught_up_s = last_caught_up_s(
            progress.last_caught_up_s,
            now,
            fetch_offset,
            leader_end,
            progress.leader_end_at_last_fetch,
            progress.last_fetch_s,
        )
        progress.fetch_offset = fetch_offset
        progress.high_watermark = follower_hw
        progress.last_fetch_s = now
        progress.leader_end_at_last_fetch = leader_end
        self.on_ack(replica, durable_offset)

    def on_ack(self, replica: str, durable_offset: int) -> None:
        """A follower's acknowledgement: offsets below ``durable_offset`` are durable there."""
        progress = self.followers.get(replica)
        if progress is None or progress.fetch_offset is None:
            return
        progress.durable_offset = min(durable_offset, progress.fetch_offset)
        self._advance_high_watermark()

    def has_news_for(self, fetch_offset: int) -> bool:
        """Would a fetch at this position get data now?

        A newer high watermark alone is not news: followers serve no reads, so they learn it
        with the next data or when their parked fetch times out (``fetch_wait_max_ms``). Waking
        them for it would double the fetch exchanges per write.
        """
        return fetch_offset < self.log.end_offset

    def _on_durable(self, error: StorageError | None) -> None:
        """The leader's own durable end moved (group commit finished)."""
        if error is None:
            self._advance_high_watermark()

    def _advance_high_watermark(self) -> None:
        if self.closed:
            return
        log = self.log
        position = leader_high_watermark(
            log.high_watermark,
            self.node_id,
            acknowledgeable_offset(log.config.fsync, log.flushed_offset, log.end_offset),
            self.hw_isr(),
            self.followers,
        )
        self._wake_if_restored()
        if position > log.high_watermark:
            log.set_high_watermark(position)
            self._release_waiters()
            self._wake(self._hw_waiters)

    def _wake_if_restored(self) -> None:
        if self._restored_waiters and self.hw_restored:
            self._wake(self._restored_waiters)

    def _release_waiters(self) -> None:
        hw = self.log.high_watermark
        while self._waiters and self._waiters[0][0] <= hw:
            _, _, waiter = heapq.heappop(self._waiters)
            if not waiter.future.done():
                waiter.future.set_result(None)

    # ------------------------------------------------------------------ ISR decisions

    def lagging_followers(self, lag_max_s: float) -> list[str]:
        """ISR members that have not caught up within ``lag_max_s``: to be removed."""
        last_caught_up = {r: p.last_caught_up_s for r, p in self.followers.items()}
        return lagging_members(
            self.info.isr, self.node_id, last_caught_up, self._clock(), lag_max_s
        )

    def caught_up_followers(self) -> list[str]:
        """Replicas outside the ISR that have caught up to the high watermark: to be added."""
        return rejoining_replicas(
            {r: p.durable_offset for r, p in self.followers.items()},
            self.info.isr,
            self.pending_isr_additions,
            self.log.high_watermark,
            self.epoch_start_offset,
        )

    # ------------------------------------------------------------------ long polls

    async def wait_for_high_watermark(self, timeout_s: float) -> None:
        """Park until the high watermark moves (a consumer's long poll)."""
        await self._park(self._hw_waiters, timeout_s)

    def wake_on_append(self, future: asyncio.Future[None]) -> None:
        """Resolve ``future`` at the next append (or close). One future may be handed to the
        leaders of every tablet a fetch covers: whichever appends first wakes it, with no
        intermediate task. The caller removes it with ``forget_waiter`` when done."""
        self._data_waiters.add(future)

    def forget_waiter(self, future: asyncio.Future[None]) -> None:
        self._data_waiters.discard(future)

    async def _park(self, waiters: set[asyncio.Future[None]], timeout_s: float) -> None:
        if self.closed or timeout_s <= 0:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters.add(future)
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout_s)
        except TimeoutError:
            pass
        finally:
            waiters.discard(future)
            if not future.done():
                future.cancel()

    @staticmethod
    def _wake(waiters: set[asyncio.Future[None]]) -> None:
        for future in list(waiters):
            if not future.done():
                future.set_result(None)
        waiters.clear()

    # ------------------------------------------------------------------ shutdown

    def close(self) -> None:
        """Leadership ended: fail waiting produces (outcome unknown) and wake every poll."""
        self.closed = True
        error = ReplicationTimeout(
            f"leadership of {self.tablet.log}/{self.tablet.index} changed before the write was "
            "acknowledged; it may or may not have committed"
        )
        for _, _, waiter in self._waiters:
            if not waiter.future.done():
                waiter.future.set_exception(error)
        self._waiters.clear()
        self._wake(self._data_waiters)
        self._wake(self._hw_waiters)
        self._wake(self._restored_waiters)
