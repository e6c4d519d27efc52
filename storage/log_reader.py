"""LogReader: serving a log's reads, from the tail cache or from the segment files.

A read returns whole batches of one segment as a ReadResult (a file slice, with the bytes when
they were read and CRC-checked). The newest batches are served from memory (tail_cache.py)
unless the caller asks for what the file holds; everything else goes through SegmentSet, which
walks from the segment's index and rebuilds a stale index once. Offsets as defined in log.py.

Not thread-safe: owned by one TabletLog on the event-loop thread.
"""

from __future__ import annotations

from storage.errors import OffsetOutOfRange
from storage.offsets import LogOffsets
from storage.results import LogStats, ReadResult
from storage.segments import SegmentSet
from storage.tail_cache import TailCache


class LogReader:
    """The read path of one log (see the module docstring)."""

    def __init__(
        self, segments: SegmentSet, tail: TailCache, offsets: LogOffsets, stats: LogStats
    ) -> None:
        self._segments = segments
        self._tail = tail
        self._offsets = offsets
        self._stats = stats

    def read(
        self, offset: int, max_bytes: int, max_offset: int | None, *, from_disk: bool
    ) -> ReadResult:
        """Whole batches from the one holding ``offset`` (see TabletLog.read)."""
        start, end = self._offsets.start, self._segments.end_offset
        if not start <= offset <= end:
            raise OffsetOutOfRange(offset, start, end)
        limit = end if max_offset is None else min(max_offset, end)
        if offset >= limit:
            return ReadResult(None, 0, 0, offset, offset)
        if not from_disk and self._tail.covers(offset):
            seg, cached = self._segments.active, self._tail.read(offset, max(max_bytes, 0), limit)
            found = None if cached is None else (seg, cached)
            self._stats.cached_reads += cached is not None
        else:
            found = self._segments.read(offset, max(max_bytes, 0), limit)
        if found is None:
            return ReadResult(None, 0, 0, offset, offset)
        seg, piece = found
        self._stats.reads += 1
        self._stats.read_bytes += piece.size
        return ReadResult(
            seg.path,
            piece.position,
            piece.size,
            piece.first_offset,
            piece.end_offset,
            piece.data,
            self._segments.files,
        )

    def offset_for_timestamp(self, timestamp_ms: int) -> int | None:
        """The first offset at or after the start whose batch's append time is >=
        ``timestamp_ms``; None if none. Raises CorruptSegment."""
        start = self._offsets.start
        found = self._segments.find_time(timestamp_ms, start)
        return None if found is None else max(found, start)
