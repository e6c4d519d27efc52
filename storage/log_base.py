"""LogBase: the state of a TabletLog and every operation that moves its offsets other than
appends: high watermark, epochs, checkpoints, rolls, truncation, retention.

Offsets are defined once, in log.py. TabletLog (log.py) adds opening, appends, reads, the flush
protocol and closing. Not thread-safe: event-loop thread only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from storage import layout
from storage.checkpoint import remove_file, write_checkpoint
from storage.config import LogConfig
from storage.epochs import LeaderEpochCache
from storage.errors import LogClosed, StaleLeaderEpoch
from storage.files import FileCache
from storage.producers import KIND as PRODUCER_KIND
from storage.producers import ProducerStateManager
from storage.recovery import HW_KIND, START_KIND, Recovered
from storage.results import LogStats
from storage.retention import retention_count
from storage.segments import SegmentSet
from storage.tail_cache import TailCache, TailCacheBudget

log = logging.getLogger(__name__)


class LogBase:
    """Offsets, checkpoints and segment maintenance of one log. Not thread-safe."""

    def __init__(
        self,
        directory: Path,
        config: LogConfig,
        *,
        files: FileCache,
        owns_files: bool,
        clock_ms: Callable[[], int],
        found: Recovered,
        tail_budget: TailCacheBudget | None = None,
    ) -> None:
        self._directory = directory
        self._config = config
        self._files = files
        self._owns_files = owns_files
        self._clock_ms = clock_ms
        self.stats = LogStats(
            recovered_truncated_bytes=found.truncated_bytes, index_rebuilds=found.index_rebuilds
        )
        self._segments = SegmentSet(directory, config, files, found.segments, self.stats)
        self._tail = TailCache(config.tail_cache_bytes, tail_budget)  # newest batches
        self._start = found.start_offset
        self._hw = found.high_watermark
        self._flushed = self._segments.end_offset
        self._epochs: LeaderEpochCache = found.epochs
        self._producers: ProducerStateManager = found.producers
        self._last_append_ms = max((s.max_time_ms for s in found.segments[-2:]), default=-1)
        self._generation = 0  # bumped by every truncation; see complete_flush
        self._saved_hw = found.saved_high_watermark
        #: Recovery cut the log below its checkpointed high watermark: this replica lost records
        #: that were committed (a damaged file). It must not lead before it has them again.
        self.lost_committed = (found.saved_high_watermark or 0) > self._segments.end_offset
        self._saved_start = found.saved_start_offset
        self._snapshot_offset: int | None = found.snapshot_offset
        self._closed = False

    # ------------------------------------------------------------------------- properties

    @property
    def directory(self) -> Path:
        """The log's directory."""
        return self._directory

    @property
    def config(self) -> LogConfig:
        """The log's storage settings."""
        return self._config

    @property
    def files(self) -> FileCache:
        """The FileCache reads go through (for ``sendfile`` of a ReadResult)."""
        return self._files

    @property
    def start_offset(self) -> int:
        """First readable offset."""
        return self._start

    @property
    def end_offset(self) -> int:
        """Offset of the next record to be appended."""
        return self._segments.end_offset

    @property
    def high_watermark(self) -> int:
        """Exclusive: offsets below it are committed."""
        return self._hw

    @property
    def flushed_offset(self) -> int:
        """Exclusive: offsets below it are durable (fsynced)."""
        return self._flushed

    @property
    def latest_epoch(self) -> int | None:
        """The newest leader epoch in the epoch cache, None if none."""
        return self._epochs.latest_epoch

    @property
    def leader_epochs(self) -> tuple[tuple[int, int], ...]:
        """The epoch cache: (epoch, start offset) pairs, oldest first."""
        return self._epochs.entries

    @property
    def size_bytes(self) -> int:
        """Bytes of all segment files."""
        return self._segments.size_bytes

    @property
    def segment_bases(self) -> list[int]:
        """Base offsets of the segments, oldest first (the last is the active one)."""
        return [s.base_offset for s in self._segments.segments]

    @property
    def producers(self) -> ProducerStateManager:
        """Idempotent-producer state (read-only use)."""
        return self._producers

    @property
    def generation(self) -> int:
        """Incremented by every truncation: data below ``end_offset`` may have changed."""
        return self._generation

    @property
    def is_closed(self) -> bool:
        """Whether close() or delete() was called."""
        return self._closed

    # ------------------------------------------------------------------------- epochs, HW

    def end_offset_for_epoch(self, epoch: int) -> tuple[int, int]:
        """(largest known epoch <= ``epoch``, exclusive end offset of that epoch) (KIP-279).

        The end is the next known epoch's start offset, or end_offset for the latest epoch;
        (-1, -1) if ``epoch`` is below every known epoch.
        """
        self._check_open()
        return self._epochs.end_offset_for(epoch, self.end_offset)

    def assign_epoch(self, epoch: int, start_offset: int) -> None:
        """Record that leader ``epoch`` starts at ``start_offset`` (a new leader passes its end
        offset). Idempotent. Raises StaleLeaderEpoch for an epoch older than the latest and
        ValueError for a start offset beyond end_offset."""
        self._check_open()
        if start_offset > self.end_offset:
            raise ValueError(f"epoch start {start_offset} is beyond the end {self.end_offset}")
        latest = self._epochs.latest_epoch
        if latest is not None and epoch < latest:
            raise StaleLeaderEpoch(epoch, latest)
        self._epochs.assign(epoch, start_offset)

    def set_high_watermark(self, offset: int) -> None:
        """Raise the high watermark to ``offset`` clamped into [start_offset, end_offset].

        Never lowers it (only truncation does). Persisted by checkpoint() and close().
        """
        self._check_open()
        self._hw = max(self._hw, min(max(offset, self._start), self.end_offset))

    def checkpoint(self) -> None:
        """Persist the high watermark and start offset (atomically; only what changed)."""
        self._check_open()
        if self._hw != self._saved_hw:
            write_checkpoint(self._directory / layout.HIGH_WATERMARK_FILE, HW_KIND, [str(self._hw)])
            self._saved_hw = self._hw
        self._save_start()

    def _save_start(self) -> None:
        if self._start != self._saved_start:
            write_checkpoint(
                self._directory / layout.LOG_START_OFFSET_FILE, START_KIND, [str(self._start)]
            )
            self._saved_start = self._start

    # ------------------------------------------------------------------------- segments

    def roll(self) -> bool:
        """Start a new segment now (if the active one is not empty); return whether it did."""
        self._check_open()
        if self._segments.active.is_empty:
            return False
        self._roll()
        return True

    def maybe_roll(self, now_ms: int | None = None) -> bool:
        """Roll the active segment if its first batch is ``segment_ms`` old; return whether."""
        self._check_open()
        seg, limit = self._segments.active, self._config.segment_ms
        if seg.is_empty or limit is None or seg.first_time_ms is None:
            return False
        now = self._clock_ms() if now_ms is None else now_ms
        if now - seg.first_time_ms < limit:
            return False
        self._roll()
        return True

    def _roll(self) -> None:
        self._segments.roll()
        self._tail.clear()
        end = self.end_offset
        write_checkpoint(
            self._directory / layout.PRODUCER_STATE_FILE,
            PRODUCER_KIND,
            self._producers.snapshot_lines(end),
            sync=False,
        )
        self._snapshot_offset = end

    # ------------------------------------------------------------------------- truncation

    def truncate_to(self, offset: int) -> None:
        """Drop every offset >= ``offset``; more precisely, truncate to the largest batch
        boundary <= ``offset`` (the start of the batch holding it), since batches are never
        split. No-op if ``offset >= end_offset``. Below start_offset (or if the boundary is),
        this is truncate_fully_and_start_at. Fixes indexes, epochs, producer state; the high
        watermark becomes min(HW, new end). Raises CorruptSegment, OSError.
        """
        self._check_open()
        if offset >= self.end_offset:
            return
        if offset < self._start:
            self.truncate_fully_and_start_at(offset)
            return
        if self._segments.boundary_at_or_below(offset) < self._start:
            self.truncate_fully_and_start_at(self._start)
            return
        self._after_truncation(self._segments.truncate_to(offset))

    def truncate_fully_and_start_at(self, offset: int) -> None:
        """Delete everything and start an empty log at ``offset`` (start == end == HW)."""
        self._check_open()
        assert offset >= 0
        self._start = offset
        self._save_start()
        self._segments.replace_all(offset)
        self._epochs.clear()
        self._producers.clear()
        self._snapshot_offset = None  # describes data that is gone
        self._after_truncation(offset)

    def _after_truncation(self, end: int) -> None:
        self._generation += 1
        self._tail.clear()
        self._epochs.truncate_from_end(end)
        self._producers.truncate_from_end(end)
        if self._snapshot_offset is None or self._snapshot_offset > end:
            remove_file(self._directory / layout.PRODUCER_STATE_FILE)
            self._snapshot_offset = None
        self._hw = max(min(self._hw, end), self._start)
        self._flushed = min(self._flushed, end)

    def advance_start_offset(self, offset: int) -> None:
        """Raise start_offset to ``offset`` (a follower whose leader's start moved), deleting
        segments entirely below it; beyond end_offset this is truncate_fully_and_start_at."""
        self._check_open()
        if offset <= self._start:
            return
        if offset > self.end_offset:
            self.truncate_fully_and_start_at(offset)
            return
        segments = self._segments.segments
        count = 0
        while count < len(segments) - 1 and segments[count + 1].base_offset <= offset:
            count += 1
        self._remove_head(offset, count)

    def apply_retention(self, now_ms: int | None = None) -> int:
        """Delete closed segments older than retention_ms (by their largest append time) and
        the oldest ones while the log is larger than retention_bytes; never the active segment
        nor a segment with offsets at or above the high watermark. Rolls by segment_ms first.
        Crash-safe: the new start offset is checkpointed before files are renamed to
        ``.deleted`` and removed. Returns the number of segments deleted.
        """
        self._check_open()
        now = self._clock_ms() if now_ms is None else now_ms
        self.maybe_roll(now)
        count = retention_count(self._segments.segments, self._config, now, self._hw)
        if count:
            self._remove_head(self._segments.segments[count].base_offset, count)
        return count

    def _remove_head(self, new_start: int, count: int) -> None:
        self._start = new_start
        self._save_start()
        if count:
            self._segments.delete_oldest(count)
        self._hw = max(self._hw, new_start)
        self._flushed = max(self._flushed, min(new_start, self.end_offset))
        self._epochs.truncate_from_start(new_start)
        self._producers.drop_below(new_start)

    def _check_open(self) -> None:
        if self._closed:
            raise LogClosed(f"log {self._directory} is closed")
