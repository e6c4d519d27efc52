"""LogTrimmer: removing offsets from either end of a log.

At the end, truncation (a follower whose log diverged from its leader's, see
``TabletLog.truncate_to``) cuts the segment holding the cut point and deletes the later ones; at
the head, retention and ``advance_start_offset`` delete whole segments and move the start offset.
Either way the other state follows: the leader-epoch cache, the producer state and its snapshot,
the tail cache, and the offsets (offsets.py), whose generation a truncation bumps so that flushes
and durability waits taken before it are not trusted.

Crash safety: a new start offset is checkpointed before any file is deleted (recovery deletes
segments below it); deletions rename files to ``.deleted`` first (segments.py).

Not thread-safe: owned by one TabletLog on the event-loop thread.
"""

from __future__ import annotations

import logging

from storage.epochs import LeaderEpochCache
from storage.log_checkpoints import LogCheckpoints
from storage.offsets import LogOffsets
from storage.producers import ProducerStateManager
from storage.retention import count_below, retention_count
from storage.segments import SegmentSet
from storage.tail_cache import TailCache

log = logging.getLogger(__name__)


class LogTrimmer:
    """Truncation at the end and deletion at the head of one log (see the module docstring)."""

    def __init__(
        self,
        segments: SegmentSet,
        tail: TailCache,
        offsets: LogOffsets,
        epochs: LeaderEpochCache,
        producers: ProducerStateManager,
        checkpoints: LogCheckpoints,
    ) -> None:
        self._segments = segments
        self._tail = tail
        self._offsets = offsets
        self._epochs = epochs
        self._producers = producers
        self._checkpoints = checkpoints

    # ------------------------------------------------------------------------- the end

    def truncate_to(self, offset: int) -> None:
        """Cut at the largest batch boundary <= ``offset`` (see TabletLog.truncate_to)."""
        if offset >= self._segments.end_offset:
            return
        start = self._offsets.start
        if offset < start:
            self.truncate_fully_and_start_at(offset)
            return
        if self._segments.boundary_at_or_below(offset) < start:
            self.truncate_fully_and_start_at(start)
            return
        end = self._segments.truncate_to(offset)
        self._offsets.truncated(end)
        self._after_truncation(end)

    def truncate_fully_and_start_at(self, offset: int) -> None:
        """Delete everything and start an empty log at ``offset`` (start == end == HW)."""
        assert offset >= 0
        self._checkpoints.save_start(offset)
        self._segments.replace_all(offset)
        self._epochs.clear()
        self._producers.clear()
        self._checkpoints.forget_producers()
        self._offsets.started_over(offset)
        self._after_truncation(offset)

    def restart_for_straddling_batch(self, base_offset: int, end_offset: int) -> None:
        """An empty log (start == end) about to take the batch [base_offset, end_offset) that
        holds its start offset strictly inside restarts at ``base_offset``, keeping its start
        offset (the leader's start offset fell inside a batch). Otherwise nothing changes."""
        start = self._offsets.start
        if start != self._segments.end_offset or not base_offset < start < end_offset:
            return
        log.info(
            "%s: empty log restarts at offset %d (start stays %d)",
            self._segments.directory,
            base_offset,
            start,
        )
        self._segments.replace_all(base_offset)
        self._offsets.truncated(base_offset)
        self._after_truncation(base_offset)

    def _after_truncation(self, end: int) -> None:
        self._tail.clear()
        self._epochs.truncate_from_end(end)
        self._producers.truncate_from_end(end)
        self._checkpoints.drop_producers_beyond(end)

    # ------------------------------------------------------------------------- the head

    def advance_start_offset(self, offset: int) -> None:
        """Raise the start offset to ``offset``, deleting segments entirely below it; beyond
        the end offset this is truncate_fully_and_start_at."""
        if offset <= self._offsets.start:
            return
        if offset > self._segments.end_offset:
            self.truncate_fully_and_start_at(offset)
            return
        self._remove_head(offset, count_below(self._segments.segments, offset))

    def apply_retention(self, now_ms: int) -> int:
        """Delete the closed segments retention.py picks at ``now_ms``; return how many."""
        segments = self._segments.segments
        count = retention_count(
            segments, self._segments.config, now_ms, self._offsets.high_watermark
        )
        if count:
            self._remove_head(segments[count].base_offset, count)
        return count

    def _remove_head(self, new_start: int, count: int) -> None:
        self._checkpoints.save_start(new_start)
        if count:
            self._segments.delete_oldest(count)
        self._offsets.head_removed(new_start, self._segments.end_offset)
        self._epochs.truncate_from_start(new_start)
        self._producers.drop_below(new_start)
