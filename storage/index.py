"""Sparse per-segment indexes: offset -> file position, and append time -> offset.

Both live in memory (two parallel arrays each) while a segment is in use and are written to disk
when the segment is rolled and when the log is closed. No attempt is made to checksum them: the
index may lag or disagree with the log after a crash, so it is sanity-checked on load and rebuilt
from the segment rather than trusted (recovery.py); a read that lands on a position where the
expected batch does not start also triggers a rebuild.

``.index`` bytes: entries of 8 bytes, big-endian, ascending::

    u32 relative_offset   base offset of a batch minus the segment's base offset
    u32 position          byte position of that batch in the ``.log`` file

An entry is added before writing a batch once ``index_interval_bytes`` have been written since
the previous entry (the first batch of a segment, at position 0, is implied), so a lookup scans
at most ``index_interval_bytes`` plus one batch.

``.timeindex`` bytes: entries of 12 bytes, big-endian, strictly ascending in both fields::

    i64 time_ms           the largest append time of the segment's batches up to this entry
    u32 relative_offset   offset of the batch that holds that time, minus the base offset

A time entry is added together with an offset entry when the largest append time so far has
grown since the previous time entry, and once more when the segment is sealed, so its last entry
holds the segment's largest append time. All batches before ``relative_offset`` have an append
time at most ``time_ms``.

Not thread-safe: owned by one segment on the event-loop thread.
"""

from __future__ import annotations

import struct
from array import array
from bisect import bisect_left, bisect_right

_OFFSET_ENTRY = struct.Struct(">II")
_TIME_ENTRY = struct.Struct(">qI")
OFFSET_ENTRY_SIZE = _OFFSET_ENTRY.size  # 8
TIME_ENTRY_SIZE = _TIME_ENTRY.size  # 12


class OffsetIndex:
    """Relative offset -> position of a batch start, sparse, both strictly increasing."""

    __slots__ = ("positions", "relative_offsets")

    def __init__(self) -> None:
        self.relative_offsets: array[int] = array("q")
        self.positions: array[int] = array("q")

    def __len__(self) -> int:
        return len(self.relative_offsets)

    def append(self, relative_offset: int, position: int) -> None:
        """Add an entry; both values must exceed the last entry's."""
        assert not self.relative_offsets or (
            relative_offset > self.relative_offsets[-1] and position > self.positions[-1]
        )
        self.relative_offsets.append(relative_offset)
        self.positions.append(position)

    def floor(self, relative_offset: int) -> tuple[int, int]:
        """(relative offset, position) of the last entry at or below ``relative_offset``.

        Returns (0, 0), the segment's first batch, when there is none.
        """
        i = bisect_right(self.relative_offsets, relative_offset)
        if i == 0:
            return 0, 0
        return self.relative_offsets[i - 1], self.positions[i - 1]

    def last(self) -> tuple[int, int]:
        """The last entry, or (0, 0) when empty."""
        if not self.relative_offsets:
            return 0, 0
        return self.relative_offsets[-1], self.positions[-1]

    def truncate_from(self, relative_offset: int) -> None:
        """Drop entries at or above ``relative_offset``."""
        i = bisect_left(self.relative_offsets, relative_offset)
        del self.relative_offsets[i:]
        del self.positions[i:]

    def to_bytes(self) -> bytes:
        """The ``.index`` file bytes."""
        pack = _OFFSET_ENTRY.pack
        pairs = zip(self.relative_offsets, self.positions, strict=True)
        return b"".join(pack(r, p) for r, p in pairs)

    @classmethod
    def from_bytes(cls, data: bytes, *, file_size: int, offset_span: int) -> OffsetIndex | None:
        """Parse ``.index`` bytes; None if they fail a sanity check.

        Checks: whole entries, both fields strictly increasing, relative offsets in
        (0, offset_span), positions in (0, file_size).
        """
        if len(data) % OFFSET_ENTRY_SIZE:
            return None
        index = cls()
        last_rel = last_pos = 0
        for rel, pos in _OFFSET_ENTRY.iter_unpack(data):
            if not (last_rel < rel < offset_span and last_pos < pos < file_size):
                return None
            index.relative_offsets.append(rel)
            index.positions.append(pos)
            last_rel, last_pos = rel, pos
        return index


class TimeIndex:
    """Largest append time so far -> relative offset of the batch holding it, sparse."""

    __slots__ = ("relative_offsets", "times_ms")

    def __init__(self) -> None:
        self.times_ms: array[int] = array("q")
        self.relative_offsets: array[int] = array("q")

    def __len__(self) -> int:
        return len(self.times_ms)

    @property
    def last_time_ms(self) -> int:
        """Time of the last entry, -1 when empty."""
        return self.times_ms[-1] if self.times_ms else -1

    def maybe_append(self, time_ms: int, relative_offset: int) -> None:
        """Add an entry if ``time_ms`` exceeds the last entry's time."""
        if self.times_ms and time_ms <= self.times_ms[-1]:
            return
        assert not self.relative_offsets or relative_offset >= self.relative_offsets[-1]
        self.times_ms.append(time_ms)
        self.relative_offsets.append(relative_offset)

    def floor_before(self, time_ms: int) -> int:
        """Relative offset to start scanning for the first batch with time >= ``time_ms``.

        That is the offset of the last entry whose time is below ``time_ms`` (every batch
        before it is older than ``time_ms``), or 0 when there is none.
        """
        i = bisect_left(self.times_ms, time_ms)
        return self.relative_offsets[i - 1] if i else 0

    def truncate_from(self, relative_offset: int) -> None:
        """Drop entries whose relative offset is at or above ``relative_offset``."""
        i = bisect_left(self.relative_offsets, relative_offset)
        del self.times_ms[i:]
        del self.relative_offsets[i:]

    def to_bytes(self) -> bytes:
        """The ``.timeindex`` file bytes."""
        pack = _TIME_ENTRY.pack
        pairs = zip(self.times_ms, self.relative_offsets, strict=True)
        return b"".join(pack(t, r) for t, r in pairs)

    @classmethod
    def from_bytes(cls, data: bytes, *, offset_span: int) -> TimeIndex | None:
        """Parse ``.timeindex`` bytes; None if they fail a sanity check.

        Checks: whole entries, times strictly increasing, relative offsets non-decreasing and
        below ``offset_span``.
        """
        if len(data) % TIME_ENTRY_SIZE:
            return None
        index = cls()
        last_time, last_rel = -1 << 63, 0
        for time_ms, rel in _TIME_ENTRY.iter_unpack(data):
            if not (time_ms > last_time and last_rel <= rel < offset_span):
                return None
            index.times_ms.append(time_ms)
            index.relative_offsets.append(rel)
            last_time, last_rel = time_ms, rel
        return index
