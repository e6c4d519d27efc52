"""Walking the batches of a segment file: header by header, optionally checking both CRCs.

Used by recovery (validate and index a segment), by reads (find the batch holding an offset)
and by lookups by time. Reads go through a ``pread(size, position)`` callable in windows, so a
walk over many small batches costs one system call per window, not one per batch, and a walk
over big batches without verification reads only their headers. ``continuing`` wraps a walk that
must start at a known offset and stay contiguous; ``verify_batches`` checks the CRCs of walked
batches once their bytes are read.

Pure apart from the callable's I/O; thread-safe if the callable is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from storage.errors import CorruptSegment
from wire.batch import (
    BODY_POS,
    HEADER_SIZE,
    PREFIX_SIZE,
    BatchHeader,
    crc32c,
    parse_header,
    validate_batch,
)
from wire.errors import CorruptBatch

PRead = Callable[[int, int], bytes]
"""``pread(size, position) -> bytes`` of one file; shorter only at end of file."""

WINDOW_BYTES = 256 * 1024


class IndexMismatch(Exception):
    """The index points at a position where the indexed batch does not start (internal)."""


class BatchWalk:
    """Iterator of (position, header) over the batches in [``start``, ``end``) of one file.

    Raises CorruptBatch (from ``__next__``) at the first batch whose header is impossible, that
    extends past ``end`` or, with ``verify``, fails a CRC; ``position`` is then where that batch
    starts (the end of the last good batch), so the caller can truncate or report there.
    ``window`` holds the bytes read last: ``bytes_at`` returns a batch's bytes without reading
    them again when they are already in it.
    """

    def __init__(
        self, pread: PRead, start: int, end: int, *, verify: bool, window_bytes: int = WINDOW_BYTES
    ) -> None:
        self._pread = pread
        self.position = start
        self._end = end
        self._verify = verify
        self._window_bytes = window_bytes
        self.window = b""
        self.window_position = start

    def __iter__(self) -> Iterator[tuple[int, BatchHeader]]:
        return self

    def __next__(self) -> tuple[int, BatchHeader]:
        pos = self.position
        if pos >= self._end:
            raise StopIteration
        off = pos - self.window_position
        if len(self.window) - off < HEADER_SIZE:
            off = self._refill(pos, HEADER_SIZE)
            if len(self.window) < HEADER_SIZE:
                raise CorruptBatch("truncated batch header at end of file")
        h = parse_header(self.window, off)
        if pos + h.size > self._end:
            raise CorruptBatch(f"batch of {h.size} bytes extends past the end of the file")
        if self._verify:
            if len(self.window) - off < h.size:
                off = self._refill(pos, h.size)
            validate_batch(self.window, off)
        self.position = pos + h.size
        return pos, h

    def bytes_at(self, position: int, size: int) -> bytes | memoryview:
        """The ``size`` bytes at ``position``, from the window if it holds them."""
        off = position - self.window_position
        if off >= 0 and off + size <= len(self.window):
            return memoryview(self.window)[off : off + size]
        return self._pread(size, position)

    def _refill(self, pos: int, needed: int) -> int:
        size = min(max(self._window_bytes, needed), self._end - pos)
        self.window = self._pread(size, pos)
        self.window_position = pos
        return 0


def continuing(walk: BatchWalk, expected: int, path: Path) -> Iterator[tuple[int, BatchHeader]]:
    """The walk's (position, header) pairs, checking that the first batch starts at offset
    ``expected`` and each next one where the previous ended.

    A first batch that is unreadable or elsewhere raises IndexMismatch (the walk started at a
    stale index entry); a later one raises CorruptSegment (the file of ``path`` is damaged).
    """
    first = True
    while True:
        try:
            position, h = next(walk)
        except StopIteration:
            return
        except CorruptBatch as err:
            if first:
                raise IndexMismatch(str(err)) from err
            raise CorruptSegment(str(path), walk.position, str(err)) from err
        if h.base_offset != expected:
            if first:
                raise IndexMismatch(f"{path} index points at offset {h.base_offset}")
            raise CorruptSegment(
                str(path), position, f"batch at offset {h.base_offset} should start at {expected}"
            )
        first = False
        expected = h.end_offset
        yield position, h


def verify_batches(
    view: bytes | memoryview, start: int, batches: Sequence[tuple[int, BatchHeader]], path: Path
) -> None:
    """Check both CRCs of walked ``batches`` whose bytes ``view`` holds from file position
    ``start``. Raises CorruptSegment (naming ``path``) at the first mismatch."""
    mv = memoryview(view)
    for position, h in batches:
        at = position - start
        if crc32c(mv[at : at + PREFIX_SIZE]) != h.header_crc or (
            crc32c(mv[at + BODY_POS : at + h.size]) != h.crc
        ):
            raise CorruptSegment(
                str(path), position, f"checksum mismatch in batch at offset {h.base_offset}"
            )
