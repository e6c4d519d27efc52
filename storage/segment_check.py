"""Checking one segment file on open: the cheap check, the full rebuild, the torn-tail repair.

See recovery.py for when each is used. All three fill the Segment's size, end offset, indexes
and times from what they read; none of them trusts an index file further than its sanity check
and the walk from its last entry.

Not thread-safe: runs on the thread opening the log.
"""

from __future__ import annotations

import logging
import os

from storage.files import FileCache
from storage.index import OffsetIndex, TimeIndex
from storage.scan import BatchWalk, PRead
from storage.segment import Segment
from wire.batch import HEADER_SIZE, PREFIX_SIZE, crc32c, parse_header
from wire.errors import CorruptBatch

log = logging.getLogger(__name__)


class SegmentDamaged(Exception):
    """A segment's bytes fail a check at ``position`` (internal; becomes CorruptSegment)."""

    def __init__(self, position: int, reason: str) -> None:
        super().__init__(f"at byte {position}: {reason}")
        self.position = position
        self.reason = reason


def _file_size(segment: Segment) -> int:
    try:
        return segment.path.stat().st_size
    except FileNotFoundError:
        return 0


def check_closed(
    segment: Segment, files: FileCache, expected_end: int, interval_bytes: int, *, full: bool
) -> int:
    """Check a segment that must hold exactly [base_offset, ``expected_end``).

    Cheap check when not ``full`` (index files sane, first header, CRC walk after the last index
    entry); when that fails or with ``full``, rebuild the indexes by walking every batch with
    CRCs and rewrite the index files. Returns 1 if the indexes were rebuilt, else 0.
    Raises SegmentDamaged where the bytes are bad.
    """
    size = _file_size(segment)
    pread = segment.pread_via(files)
    if not full and _check_with_index(segment, pread, size, expected_end, interval_bytes):
        return 0
    _rebuild(segment, pread, size, interval_bytes)
    if segment.end_offset != expected_end:
        raise SegmentDamaged(
            size, f"segment ends at offset {segment.end_offset}, the next starts at {expected_end}"
        )
    segment.finish_time_index()
    try:
        segment.write_indexes(keep_open=False)
    except OSError as err:
        log.warning("%s: cannot rewrite index files: %s", segment.path, err)
    return 1


def _check_with_index(
    segment: Segment, pread: PRead, size: int, expected_end: int, interval_bytes: int
) -> bool:
    span = expected_end - segment.base_offset
    if size == 0:  # an empty segment (just rolled, or truncated to its base)
        return span == 0
    try:
        raw_index = segment.index_path.read_bytes()
        raw_time = segment.time_index_path.read_bytes()
    except OSError:
        return False
    index = OffsetIndex.from_bytes(raw_index, file_size=size, offset_span=span)
    time_index = TimeIndex.from_bytes(raw_time, offset_span=span)
    if index is None or time_index is None or size < HEADER_SIZE:
        log.warning("%s: index files missing or insane; rebuilding", segment.path)
        return False
    head = pread(HEADER_SIZE, 0)
    try:
        first = parse_header(head)
    except CorruptBatch:
        return False
    if first.base_offset != segment.base_offset or crc32c(head[:PREFIX_SIZE]) != first.header_crc:
        return False
    rel, position = index.last()
    expected = segment.base_offset + rel
    max_time = time_index.last_time_ms
    max_offset = segment.base_offset + (time_index.relative_offsets[-1] if len(time_index) else 0)
    walked = 0
    try:
        for _pos, h in BatchWalk(pread, position, size, verify=True):
            if h.base_offset != expected or walked >= interval_bytes:
                return False  # not where the index says, or an entry is missing (cut short)
            expected = h.end_offset
            walked += h.size
            if h.append_time_ms > max_time:
                max_time, max_offset = h.append_time_ms, h.base_offset
    except CorruptBatch:
        return False
    if expected != expected_end:
        return False
    segment.adopt(
        index,
        time_index,
        size=size,
        end_offset=expected_end,
        first_time_ms=first.append_time_ms,
        max_time_ms=max_time,
        max_time_offset=max_offset,
    )
    return True


def _rebuild(segment: Segment, pread: PRead, size: int, interval_bytes: int) -> None:
    segment.reset()
    walk = BatchWalk(pread, 0, size, verify=True)
    while True:
        try:
            position, h = next(walk)
        except StopIteration:
            return
        except CorruptBatch as err:
            raise SegmentDamaged(walk.position, str(err)) from None
        if h.base_offset != segment.end_offset:
            raise SegmentDamaged(
                position, f"batch at offset {h.base_offset} should start at {segment.end_offset}"
            )
        segment.note_batch(
            position,
            h.base_offset,
            h.end_offset,
            size=h.size,
            time_ms=h.append_time_ms,
            interval_bytes=interval_bytes,
        )


def recover_active(segment: Segment, files: FileCache, interval_bytes: int) -> int:
    """Rebuild the active segment's indexes, cutting the file at the first bad batch.

    Returns the number of bytes cut (0 for an intact segment).
    """
    size = _file_size(segment)
    try:
        _rebuild(segment, segment.pread_via(files), size, interval_bytes)
    except SegmentDamaged as damage:
        log.warning(
            "%s: cutting %d bytes of torn or corrupt tail %s",
            segment.path,
            size - damage.position,
            damage,
        )
        files.evict(segment.path)
        fd = os.open(segment.path, os.O_RDWR | os.O_CLOEXEC)
        try:
            os.ftruncate(fd, damage.position)
            os.fdatasync(fd)
        finally:
            os.close(fd)
    return size - segment.size
