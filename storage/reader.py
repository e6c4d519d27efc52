"""Reading one segment: the batch holding an offset, a slice of whole batches, a time lookup.

Every function starts at the segment's index entry at or below the wanted offset and walks batch
headers forward (scan.py), checking that each batch starts where the previous one ended. A walk
that does not start on the indexed batch raises IndexMismatch (the index is stale: rebuild it
and retry); any other inconsistency is corruption of the file (CorruptSegment).

Pure functions over a ``pread`` callable; not thread-safe only as far as the segment object is.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from storage.errors import CorruptBatch, CorruptSegment
from storage.scan import WINDOW_BYTES, BatchWalk, PRead
from storage.segment import Segment
from wire.batch import BODY_POS, HEADER_SIZE, PREFIX_SIZE, BatchHeader, crc32c

READ_WALK_WINDOW_BYTES = 8 * 1024


class IndexMismatch(Exception):
    """The index points at a position where the indexed batch does not start (internal)."""


@dataclass(frozen=True, slots=True)
class Slice:
    """Whole batches at [position, position + size) holding offsets [first_offset, end_offset)."""

    position: int
    size: int
    first_offset: int
    end_offset: int
    data: bytes | None  # the slice's bytes when they were read (and verified)


def walk_from(
    segment: Segment, pread: PRead, offset: int, *, window_bytes: int = WINDOW_BYTES
) -> tuple[BatchWalk, Iterator[tuple[int, BatchHeader]]]:
    """Walk the segment's batches from the indexed batch at or below ``offset``.

    Returns the walk (for its window) and an iterator of (position, header) that raises
    IndexMismatch or CorruptSegment as described in the module docstring.
    """
    floor_offset, position = segment.floor(offset)
    walk = BatchWalk(pread, position, segment.size, verify=False, window_bytes=window_bytes)
    return walk, _checked(segment, walk, floor_offset)


def _checked(segment: Segment, walk: BatchWalk, expected: int) -> Iterator[tuple[int, BatchHeader]]:
    first = True
    while True:
        try:
            position, h = next(walk)
        except StopIteration:
            return
        except CorruptBatch as err:
            if first:
                raise IndexMismatch(str(err)) from err
            raise CorruptSegment(str(segment.path), walk.position, str(err)) from err
        if h.base_offset != expected:
            if first:
                raise IndexMismatch(f"{segment.path} index points at offset {h.base_offset}")
            raise CorruptSegment(
                str(segment.path),
                position,
                f"batch at offset {h.base_offset} should start at {expected}",
            )
        first = False
        expected = h.end_offset
        yield position, h


def read_slice(
    segment: Segment, pread: PRead, offset: int, max_bytes: int, limit: int, *, verify: bool
) -> Slice | None:
    """Whole batches from the one holding ``offset``, up to ``max_bytes`` (at least one batch),
    every batch ending at or below ``limit``. None if the first batch ends above ``limit``.

    With ``verify`` the bytes are read (one exact pread, or a copy out of the walk's window for
    small slices) and both CRCs of every batch checked (CorruptSegment); without it the caller
    reads or sendfiles the slice itself.

    The walk reads headers through small windows so that big batches are stepped over, not read
    twice: the bytes of a large slice are read once, by the final pread.
    """
    assert segment.base_offset <= offset < segment.end_offset
    walk, batches = walk_from(segment, pread, offset, window_bytes=READ_WALK_WINDOW_BYTES)
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
    assert chosen, f"offset {offset} not found in {segment}"
    start = chosen[0][0]
    data = None
    if verify:
        view = walk.bytes_at(start, total)
        _verify(segment, view, start, chosen)
        data = view if isinstance(view, bytes) else bytes(view)
    return Slice(start, total, chosen[0][1].base_offset, chosen[-1][1].end_offset, data)


def _verify(
    segment: Segment, view: bytes | memoryview, start: int, chosen: list[tuple[int, BatchHeader]]
) -> None:
    mv = memoryview(view)
    for position, h in chosen:
        at = position - start
        if crc32c(mv[at : at + PREFIX_SIZE]) != h.header_crc or (
            crc32c(mv[at + BODY_POS : at + h.size]) != h.crc
        ):
            raise CorruptSegment(
                str(segment.path), position, f"checksum mismatch in batch at offset {h.base_offset}"
            )


def find_time(segment: Segment, pread: PRead, time_ms: int) -> int | None:
    """Base offset of the first batch with append time >= ``time_ms``, or None."""
    if segment.max_time_ms < time_ms:
        return None
    start = segment.base_offset + segment.time_index.floor_before(time_ms)
    _walk, batches = walk_from(segment, pread, start)
    for _position, h in batches:
        if h.end_offset > start and h.append_time_ms >= time_ms:
            return h.base_offset
    return None


@dataclass(frozen=True, slots=True)
class Boundary:
    """The batch start at or below a truncation offset, and the times of what stays before it."""

    offset: int
    position: int
    max_time_ms: int  # over the batches walked before the boundary (-1 if none)
    max_time_offset: int


def find_boundary(segment: Segment, pread: PRead, offset: int) -> Boundary:
    """The largest batch boundary <= ``offset`` in ``segment`` (``offset`` < its end)."""
    assert segment.base_offset <= offset < segment.end_offset
    max_time, max_time_offset = -1, segment.base_offset
    _walk, batches = walk_from(segment, pread, offset, window_bytes=64 * 1024)
    for position, h in batches:
        if h.end_offset > offset:
            return Boundary(h.base_offset, position, max_time, max_time_offset)
        if h.append_time_ms > max_time:
            max_time, max_time_offset = h.append_time_ms, h.base_offset
    raise AssertionError(f"offset {offset} not found in {segment}")
