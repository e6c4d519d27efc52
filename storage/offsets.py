"""LogOffsets: a log's start offset, high watermark, flushed offset and truncation generation.

The offsets are defined in log.py. This class holds the ones that are not the end offset (that
one is the active segment's) and every rule that moves them, so that the invariants
``start_offset <= high_watermark <= end_offset`` and ``flushed_offset <= end_offset`` are kept in
one place. Each method takes the log's end offset as it is after the change it describes.

Pure (no I/O). Not thread-safe: owned by one TabletLog on the event-loop thread.
"""

from __future__ import annotations


class LogOffsets:
    """The moving offsets of one log other than its end (see the module docstring)."""

    __slots__ = ("_flushed", "_generation", "_high_watermark", "_start")

    def __init__(self, start_offset: int, high_watermark: int, flushed_offset: int) -> None:
        self._start = start_offset
        self._high_watermark = high_watermark
        self._flushed = flushed_offset
        self._generation = 0

    def __repr__(self) -> str:
        return (
            f"LogOffsets(start={self._start}, hw={self._high_watermark}, "
            f"flushed={self._flushed}, generation={self._generation})"
        )

    @property
    def start(self) -> int:
        """First readable offset."""
        return self._start

    @property
    def high_watermark(self) -> int:
        """Exclusive: offsets below it are committed."""
        return self._high_watermark

    @property
    def flushed(self) -> int:
        """Exclusive: offsets below it are durable (fsynced)."""
        return self._flushed

    @property
    def generation(self) -> int:
        """Incremented by every truncation: data below the end offset may have changed."""
        return self._generation

    def raise_high_watermark(self, offset: int, end: int) -> None:
        """Raise the high watermark to ``offset`` clamped into [start, ``end``]; never lower it."""
        self._high_watermark = max(self._high_watermark, min(max(offset, self._start), end))

    def truncated(self, end: int) -> None:
        """The log was cut to ``end``: a new generation; HW and flushed offset at most ``end``
        (the HW never below start: an empty log may restart below its start offset)."""
        self._generation += 1
        self._high_watermark = max(min(self._high_watermark, end), self._start)
        self._flushed = min(self._flushed, end)

    def started_over(self, offset: int) -> None:
        """Everything was deleted and the log is empty at ``offset``: start == end == HW."""
        self._start = offset
        self.truncated(offset)

    def head_removed(self, new_start: int, end: int) -> None:
        """Offsets below ``new_start`` (<= ``end``) were deleted: nothing there is uncommitted
        or waits for an fsync any more."""
        self._start = new_start
        self._high_watermark = max(self._high_watermark, new_start)
        self._flushed = max(self._flushed, min(new_start, end))

    def flushed_up_to(self, offset: int, generation: int, end: int) -> None:
        """An fsync taken at ``generation`` covered offsets below ``offset``; a flush taken
        before a truncation advances nothing (what it synced may be gone)."""
        if generation == self._generation:
            self._flushed = max(self._flushed, min(offset, end))
