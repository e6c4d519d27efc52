"""Segment: one ``{base_offset:020d}.log`` file, its in-memory indexes, and reading it.

Bytes of a ``.log`` file: whole record batches (batch.py format) back to back, nothing else; no
file header, no padding. Batch ``i+1`` starts where batch ``i`` ends and its base offset is batch
``i``'s end offset; the first batch's base offset is the segment's ``base_offset``. A batch never
spans two segments. Positions are kept below 2**32 (4-byte index fields), which is why a segment
is rolled at ``min(segment_bytes, SEGMENT_BYTES_HARD_MAX)`` whatever the config says.

Only the last (active) segment of a log is written, through an ``O_APPEND`` fd; closed segments
are read through the node's FileCache.

Reading: every lookup starts at the index entry at or below the wanted offset and walks batch
headers forward (scan.py ``continuing``), checking that each batch starts where the previous one
ended. A walk that does not start on the indexed batch raises IndexMismatch (the index is stale:
SegmentSet rebuilds it and retries); any other inconsistency is corruption (CorruptSegment).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from storage.files import FileCache, write_all
from storage.index import OffsetIndex, TimeIndex
from storage.layout import INDEX_SUFFIX, TIME_INDEX_SUFFIX, segment_path
from storage.scan import WINDOW_BYTES, BatchWalk, PRead, continuing, verify_batches
from wire.batch import HEADER_SIZE, BatchHeader

SEGMENT_BYTES_HARD_MAX = 1 << 31
READ_WALK_WINDOW_BYTES = 8 * 1024

BatchPlacement = tuple[int, int, int, int]
"""(base_offset, end_offset, size in bytes, append time ms) of one batch being written."""


@dataclass(frozen=True, slots=True)
class Slice:
    """Whole batches at [position, position + size) holding offsets [first_offset, end_offset)."""

    position: int
    size: int
    first_offset: int
    end_offset: int
    data: bytes | None  # the slice's bytes when they were read (and verified)


@dataclass(frozen=True, slots=True)
class Boundary:
    """The batch start at or below a truncation offset, and the times of what stays before it."""

    offset: int
    position: int
    max_time_ms: int  # over the batches walked before the boundary (-1 if none)
    max_time_offset: int


class Segment:
    """A segment's file, size, offset range and indexes. Offsets in [base_offset, end_offset).

    ``size`` is the file's length in bytes as far as this log knows (written bytes); ``end_offset``
    is the offset after its last batch (== ``base_offset`` when empty). ``max_time_ms`` is the
    largest append time of its batches (-1 when empty), ``first_time_ms`` the append time of
    its first batch (None when empty; used to roll by ``segment_ms``). Every field changes only
    through the methods below, which keep them consistent with the file.

    Not thread-safe: owned by one log on the event-loop thread.
    """

    __slots__ = (
        "_base_offset",
        "_bytes_since_index",
        "_end_offset",
        "_fd",
        "_first_time_ms",
        "_index",
        "_max_time_ms",
        "_max_time_offset",
        "_path",
        "_size",
        "_time_index",
        "_uncached_below",
    )

    def __init__(self, directory: Path, base_offset: int) -> None:
        self._base_offset = base_offset
        self._path = segment_path(directory, base_offset)
        self._size = 0
        self._uncached_below = 0  # bytes below this position were evicted from the page cache
        self._end_offset = base_offset
        self._index = OffsetIndex()
        self._time_index = TimeIndex()
        self._bytes_since_index = 0
        self._max_time_ms = -1
        self._max_time_offset = base_offset
        self._first_time_ms: int | None = None
        self._fd: int | None = None  # write fd while active

    def __repr__(self) -> str:
        return (
            f"Segment({self._path.name}, [{self._base_offset}, {self._end_offset}), {self._size} B)"
        )

    # ------------------------------------------------------------------------- fields

    @property
    def base_offset(self) -> int:
        """The first offset of the segment (its file name)."""
        return self._base_offset

    @property
    def path(self) -> Path:
        """Path of the ``.log`` file."""
        return self._path

    @property
    def size(self) -> int:
        """Bytes of the file as far as this log knows (the position the next batch goes to)."""
        return self._size

    @property
    def end_offset(self) -> int:
        """Exclusive: the offset after the last batch (``base_offset`` when empty)."""
        return self._end_offset

    @property
    def max_time_ms(self) -> int:
        """The largest append time of the batches, -1 when empty."""
        return self._max_time_ms

    @property
    def first_time_ms(self) -> int | None:
        """The append time of the first batch, None when empty."""
        return self._first_time_ms

    @property
    def fd(self) -> int | None:
        """The write fd while this is the active segment (owned by the segment), else None."""
        return self._fd

    @property
    def is_empty(self) -> bool:
        """Whether the segment holds no batch."""
        return self._size == 0

    @property
    def index_path(self) -> Path:
        """Path of the ``.index`` file."""
        return segment_path(self._path.parent, self._base_offset, INDEX_SUFFIX)

    @property
    def time_index_path(self) -> Path:
        """Path of the ``.timeindex`` file."""
        return segment_path(self._path.parent, self._base_offset, TIME_INDEX_SUFFIX)

    # ------------------------------------------------------------------------- building

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
        assert position == self._size and base_offset == self._end_offset
        if self._bytes_since_index >= interval_bytes:
            self._index.append(base_offset - self._base_offset, position)
            self._time_index.maybe_append(
                self._max_time_ms, self._max_time_offset - self._base_offset
            )
            self._bytes_since_index = 0
        self._bytes_since_index += size
        if time_ms > self._max_time_ms:
            self._max_time_ms = time_ms
            self._max_time_offset = base_offset
        if self._first_time_ms is None:
            self._first_time_ms = time_ms
        self._size = position + size
        self._end_offset = end_offset

    def reset(self) -> None:
        """Forget the contents (indexes, size, times) before a rebuild walks the file again."""
        self._index, self._time_index = OffsetIndex(), TimeIndex()
        self._size = self._bytes_since_index = 0
        self._end_offset = self._max_time_offset = self._base_offset
        self._first_time_ms, self._max_time_ms = None, -1

    def adopt(
        self,
        index: OffsetIndex,
        time_index: TimeIndex,
        *,
        size: int,
        end_offset: int,
        first_time_ms: int,
        max_time_ms: int,
        max_time_offset: int,
    ) -> None:
        """Take loaded index files and what a check of the file found as the segment's state."""
        self._index, self._time_index = index, time_index
        self._size, self._end_offset = size, end_offset
        self._bytes_since_index = size - index.last()[1]
        self._first_time_ms, self._max_time_ms = first_time_ms, max_time_ms
        self._max_time_offset = max_time_offset

    def finish_time_index(self) -> None:
        """Add the final time entry so the time index's last entry holds ``max_time_ms``."""
        if self._max_time_ms >= 0:
            self._time_index.maybe_append(
                self._max_time_ms, self._max_time_offset - self._base_offset
            )

    # ------------------------------------------------------------------------- the file

    def open_writer(self, files: FileCache, *, create: bool) -> int:
        """Open the write fd (``O_APPEND``), register it with ``files`` and return it."""
        assert self._fd is None
        flags = os.O_RDWR | os.O_APPEND | os.O_CLOEXEC
        if create:
            flags |= os.O_CREAT | os.O_TRUNC
        self._fd = os.open(self._path, flags, 0o644)
        files.register_writer(self._path, self._fd)
        return self._fd

    def release_writer(self, files: FileCache) -> int | None:
        """Unregister and hand over the write fd (the caller closes or syncs it)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            files.unregister_writer(self._path)
        return fd

    def append(
        self,
        buffers: Sequence[bytes | memoryview],
        batches: Sequence[BatchPlacement],
        interval_bytes: int,
    ) -> int:
        """Write ``buffers`` (the whole ``batches``, in order) at the end; return the bytes.

        On error the file is cut back to its previous size and the OSError re-raised: nothing
        of the write is then in the segment.
        """
        assert self._fd is not None
        position = start = self._size
        try:
            write_all(self._fd, buffers)
        except OSError:
            os.ftruncate(self._fd, position)
            raise
        for base, end, size, time_ms in batches:
            self.note_batch(
                position, base, end, size=size, time_ms=time_ms, interval_bytes=interval_bytes
            )
            position += size
        return position - start

    def cut_at(self, boundary: Boundary) -> None:
        """Cut the file (ftruncate, fdatasync) and the indexes at batch boundary ``boundary``.

        The segment must be the active one (write fd open). Raises OSError.
        """
        assert self._fd is not None
        offset, position = boundary.offset, boundary.position
        self._uncached_below = min(self._uncached_below, position)
        os.ftruncate(self._fd, position)
        os.fdatasync(self._fd)
        rel = offset - self._base_offset
        self._index.truncate_from(rel)
        self._time_index.truncate_from(rel)
        self._size, self._end_offset = position, offset
        self._bytes_since_index = position - self._index.last()[1]
        times = self._time_index  # the newest time still indexed, or the newest walked past
        if times.last_time_ms >= boundary.max_time_ms:
            rel = times.relative_offsets[-1] if len(times) else 0
            max_time, max_offset = times.last_time_ms, self._base_offset + rel
        else:
            max_time, max_offset = boundary.max_time_ms, boundary.max_time_offset
        self._max_time_ms, self._max_time_offset = max_time, max_offset
        if offset == self._base_offset:
            self._first_time_ms = None

    def mark_uncached(self, up_to: int, min_bytes: int) -> tuple[int, int] | None:
        """(position, length) of the bytes below ``up_to`` not yet evicted from the page cache,
        if there are at least ``min_bytes`` of them (they now count as evicted); else None."""
        length = up_to - self._uncached_below
        if length < min_bytes:
            return None
        position, self._uncached_below = self._uncached_below, up_to
        return position, length

    def write_indexes(self, *, keep_open: bool) -> list[int]:
        """Write the ``.index`` and ``.timeindex`` files (no fsync).

        Returns their fds if ``keep_open`` (for a later fsync by a flush ticket), else [].
        Raises OSError.
        """
        fds = []
        for path, data in (
            (self.index_path, self._index.to_bytes()),
            (self.time_index_path, self._time_index.to_bytes()),
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

    # ------------------------------------------------------------------------- reading

    def pread_via(self, files: FileCache) -> PRead:
        """A ``pread(size, position)`` of this segment's file through ``files``."""
        path = self._path
        return lambda size, position: files.pread(path, size, position)

    def walk_from(
        self, pread: PRead, offset: int, *, window_bytes: int = WINDOW_BYTES
    ) -> tuple[BatchWalk, Iterator[tuple[int, BatchHeader]]]:
        """Walk the batches from the indexed batch at or below ``offset``.

        Returns the walk (for its window) and an iterator of (position, header) that raises
        IndexMismatch or CorruptSegment as described in the module docstring.
        """
        rel, position = self._index.floor(offset - self._base_offset)
        walk = BatchWalk(pread, position, self._size, verify=False, window_bytes=window_bytes)
        return walk, continuing(walk, self._base_offset + rel, self._path)

    def read_slice(
        self, pread: PRead, offset: int, max_bytes: int, limit: int, *, verify: bool
    ) -> Slice | None:
        """Whole batches from the one holding ``offset``, up to ``max_bytes`` (at least one
        batch), every batch ending at or below ``limit``. None if the first batch ends above
        ``limit``.

        With ``verify`` the bytes are read (one exact pread, or a copy out of the walk's window
        for small slices) and both CRCs of every batch checked (CorruptSegment); without it the
        caller reads or sendfiles the slice itself.

        The walk reads headers through small windows so that big batches are stepped over, not
        read twice: the bytes of a large slice are read once, by the final pread.
        """
        assert self._base_offset <= offset < self._end_offset
        walk, batches = self.walk_from(pread, offset, window_bytes=READ_WALK_WINDOW_BYTES)
        chosen: list[tuple[int, BatchHeader]] = []
        total = 0
        for position, h in batches:
            if not chosen:
                if h.end_offset <= offset:
                    continue
                if h.end_offset > limit:
                    return None
            elif total + h.size > max_bytes or h.end_offset > limit:
                break
            chosen.append((position, h))
            total += h.size
            if total + HEADER_SIZE > max_bytes:
                break  # no further batch can fit: do not read its header
        assert chosen, f"offset {offset} not found in {self}"
        start = chosen[0][0]
        data = None
        if verify:
            view = walk.bytes_at(start, total)
            verify_batches(view, start, chosen, self._path)
            data = view if isinstance(view, bytes) else bytes(view)
        return Slice(start, total, chosen[0][1].base_offset, chosen[-1][1].end_offset, data)

    def find_time(self, pread: PRead, time_ms: int) -> int | None:
        """Base offset of the first batch with append time >= ``time_ms``, or None."""
        if self._max_time_ms < time_ms:
            return None
        start = self._base_offset + self._time_index.floor_before(time_ms)
        _walk, batches = self.walk_from(pread, start)
        for _position, h in batches:
            if h.end_offset > start and h.append_time_ms >= time_ms:
                return h.base_offset
        return None

    def find_boundary(self, pread: PRead, offset: int) -> Boundary:
        """The largest batch boundary <= ``offset`` (``offset`` < end_offset)."""
        assert self._base_offset <= offset < self._end_offset
        max_time, max_time_offset = -1, self._base_offset
        _walk, batches = self.walk_from(pread, offset, window_bytes=64 * 1024)
        for position, h in batches:
            if h.end_offset > offset:
                return Boundary(h.base_offset, position, max_time, max_time_offset)
            if h.append_time_ms > max_time:
                max_time, max_time_offset = h.append_time_ms, h.base_offset
        raise AssertionError(f"offset {offset} not found in {self}")
