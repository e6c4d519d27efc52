"""Segment: one ``{base_offset:020d}.log`` file plus its in-memory offset and time indexes.

Bytes of a ``.log`` file: whole record batches (batch.py format) back to back, nothing else; no
file header, no padding. Batch ``i+1`` starts where batch ``i`` ends and its base offset is batch
``i``'s end offset; the first batch's base offset is the segment's ``base_offset``. A batch never
spans two segments. Positions are kept below 2**32 (4-byte index fields), which is why a segment
is rolled at ``min(segment_bytes, SEGMENT_BYTES_HARD_MAX)`` whatever the config says.

Only the last (active) segment of a log is written, through an ``O_APPEND`` fd; closed segments
are read through the node's FileCache.
"""

from __future__ import annotations

import os
from pathlib import Path

from storage.files import FileCache, write_all
from storage.index import OffsetIndex, TimeIndex
from storage.layout import INDEX_SUFFIX, TIME_INDEX_SUFFIX, segment_path

SEGMENT_BYTES_HARD_MAX = 1 << 31


class Segment:
    """A segment's file, size, offset range and indexes. Offsets in [base_offset, end_offset).

    ``size`` is the file's length in bytes as far as this log knows (written bytes); ``end_offset``
    is the offset after its last batch (== ``base_offset`` when empty). ``max_time_ms`` is the
    largest append time of its batches (-1 when empty), ``first_time_ms`` the append time of
    its first batch (None when empty; used to roll by ``segment_ms``).

    Not thread-safe: owned by one log on the event-loop thread.
    """

    __slots__ = (
        "base_offset",
        "bytes_since_index",
        "end_offset",
        "fd",
        "first_time_ms",
        "index",
        "max_time_ms",
        "max_time_offset",
        "path",
        "size",
        "time_index",
        "uncached_below",
    )

    def __init__(self, directory: Path, base_offset: int) -> None:
        self.base_offset = base_offset
        self.path = segment_path(directory, base_offset)
        self.size = 0
        self.uncached_below = 0  # bytes below this position were evicted from the page cache
        self.end_offset = base_offset
        self.index = OffsetIndex()
        self.time_index = TimeIndex()
        self.bytes_since_index = 0
        self.max_time_ms = -1
        self.max_time_offset = base_offset
        self.first_time_ms: int | None = None
        self.fd: int | None = None  # write fd while active

    def __repr__(self) -> str:
        return f"Segment({self.path.name}, [{self.base_offset}, {self.end_offset}), {self.size} B)"

    @property
    def is_empty(self) -> bool:
        """Whether the segment holds no batch."""
        return self.size == 0

    @property
    def index_path(self) -> Path:
        """Path of the ``.index`` file."""
        return segment_path(self.path.parent, self.base_offset, INDEX_SUFFIX)

    @property
    def time_index_path(self) -> Path:
        """Path of the ``.timeindex`` file."""
        return segment_path(self.path.parent, self.base_offset, TIME_INDEX_SUFFIX)

    def note_batch(
        self,
        position: int,
        base_offset: int,
        end_offset: int,
        *,
        size: int,
        time_ms: int,
        interval_bytes: int,
    ) -> None:
        """Account for the batch [base_offset, end_offset) written at ``position``.

        Adds index entries (see index.py for when); called for every batch written or scanned,
        so an index rebuilt by recovery equals the one built by appends.
        """
        assert position == self.size and base_offset == self.end_offset
        if self.bytes_since_index >= interval_bytes:
            self.index.append(base_offset - self.base_offset, position)
            self.time_index.maybe_append(self.max_time_ms, self.max_time_offset - self.base_offset)
            self.bytes_since_index = 0
        self.bytes_since_index += size
        if time_ms > self.max_time_ms:
            self.max_time_ms = time_ms
            self.max_time_offset = base_offset
        if self.first_time_ms is None:
            self.first_time_ms = time_ms
        self.size = position + size
        self.end_offset = end_offset

    def floor(self, offset: int) -> tuple[int, int]:
        """(offset, position) of the last indexed batch start at or below ``offset``."""
        rel, position = self.index.floor(offset - self.base_offset)
        return self.base_offset + rel, position

    def finish_time_index(self) -> None:
        """Add the final time entry so the time index's last entry holds ``max_time_ms``."""
        if self.max_time_ms >= 0:
            self.time_index.maybe_append(self.max_time_ms, self.max_time_offset - self.base_offset)

    def truncate_indexes(self, offset: int, position: int) -> None:
        """Drop index entries at or above ``offset`` (a batch start at ``position``)."""
        rel = offset - self.base_offset
        self.index.truncate_from(rel)
        self.time_index.truncate_from(rel)
        self.size = position
        self.end_offset = offset
        self.bytes_since_index = position - self.index.last()[1]

    def reset_times(
        self, first_time_ms: int | None, max_time_ms: int, max_time_offset: int
    ) -> None:
        """Set the time bookkeeping after a truncation or rebuild."""
        self.first_time_ms = first_time_ms
        self.max_time_ms = max_time_ms
        self.max_time_offset = max_time_offset

    def open_writer(self, files: FileCache, *, create: bool) -> int:
        """Open the write fd (``O_APPEND``), register it with ``files`` and return it."""
        assert self.fd is None
        flags = os.O_RDWR | os.O_APPEND | os.O_CLOEXEC
        if create:
            flags |= os.O_CREAT | os.O_TRUNC
        self.fd = os.open(self.path, flags, 0o644)
        files.register_writer(self.path, self.fd)
        return self.fd

    def release_writer(self, files: FileCache) -> int | None:
        """Unregister and hand over the write fd (the caller closes or syncs it)."""
        fd, self.fd = self.fd, None
        if fd is not None:
            files.unregister_writer(self.path)
        return fd

    def write_indexes(self, *, keep_open: bool) -> list[int]:
        """Write the ``.index`` and ``.timeindex`` files (no fsync).

        Returns their fds if ``keep_open`` (for a later fsync by a flush ticket), else [].
        Raises OSError.
        """
        fds = []
        for path, data in (
            (self.index_path, self.index.to_bytes()),
            (self.time_index_path, self.time_index.to_bytes()),
        ):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            try:
                write_all(fd, [data])
            except BaseException:
                os.close(fd)
                raise
            if keep_open:
                fds.append(fd)
            else:
                os.close(fd)
        return fds
