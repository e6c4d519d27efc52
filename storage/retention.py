"""How many of the oldest segments a deletion at the head of a log removes (pure; the deletion
itself is LogTrimmer's, trimming.py): by the retention policy, or below a new start offset.

Retention rules, applied to closed segments from the oldest, stopping at the first one that stays:

* by time: a segment whose largest append time is older than ``now - retention_ms``;
* by size: the oldest segments while the log's total size exceeds ``retention_bytes``;
* never the active segment, and never a segment holding offsets at or above the high watermark
  (uncommitted data is not deleted, as in Kafka; a replica whose HW lags keeps more).

Thread-safe (pure).
"""

from __future__ import annotations

from collections.abc import Sequence

from storage.config import LogConfig
from storage.segment import Segment


def retention_count(
    segments: Sequence[Segment], config: LogConfig, now_ms: int, high_watermark: int
) -> int:
    """How many of the oldest ``segments`` (the last is active) retention deletes now."""
    count = 0
    closed = len(segments) - 1

    def deletable(i: int) -> bool:
        return i < closed and segments[i + 1].base_offset <= high_watermark

    if config.retention_ms is not None:
        cutoff = now_ms - config.retention_ms
        while deletable(count) and segments[count].max_time_ms < cutoff:
            count += 1
    if config.retention_bytes is not None:
        size = sum(s.size for s in segments[count:])
        while deletable(count) and size > config.retention_bytes:
            size -= segments[count].size
            count += 1
    return count


def count_below(segments: Sequence[Segment], offset: int) -> int:
    """How many of the oldest ``segments`` (the last is active) hold only offsets below
    ``offset``, i.e. the next segment starts at or below it; never the active one."""
    count = 0
    while count < len(segments) - 1 and segments[count + 1].base_offset <= offset:
        count += 1
    return count
