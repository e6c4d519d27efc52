"""TabletLog: the segmented, checksummed log of one tablet replica.

Offsets (Kafka's exclusive ends; the one definition every storage docstring refers to):

* ``start_offset``: the first readable offset. Reads below it raise OffsetOutOfRange.
* ``end_offset``: the offset the next appended record gets (one past the last record).
* ``high_watermark``: exclusive; offsets below it are committed (on every in-sync replica).
* ``flushed_offset``: exclusive; offsets below it are fsynced.
* An empty log has ``start_offset == end_offset``; no offset is ever -1.
  ``start_offset <= high_watermark <= end_offset`` and ``flushed_offset <= end_offset`` always.
* ``base_offset`` of a batch or segment: its first offset. ``position``: a byte position in a
  file (never an offset).

Files: see layout.py (directory), segment.py (``.log``), index.py (``.index``, ``.timeindex``),
checkpoint.py and epochs.py / producers.py (checkpoints), recovery.py (what open checks).

Threads: TabletLog is not thread-safe. Call every method from one thread (the event loop), except
``FlushTicket.run`` (flush.py), which may run on any thread while the loop keeps appending.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from storage import layout
from storage.checkpoint import fsync_directory, write_checkpoint
from storage.config import LogConfig
from storage.errors import (
    CorruptBatch,
    NonContiguousAppend,
    OffsetOutOfRange,
    StaleLeaderEpoch,
)
from storage.files import FileCache
from storage.flush import FlushTicket
from storage.log_base import LogBase
from storage.producers import KIND as PRODUCER_KIND
from storage.recovery import CLEAN_KIND, marker_lines, recover
from storage.results import AppendResult, ReadResult
from storage.segments import BatchPlacement
from storage.tail_cache import TailCacheBudget
from wire.batch import CRC_POS, BatchHeader, stamped_prefix, validate_batch

log = logging.getLogger(__name__)

Request = list[tuple[int, BatchHeader]]
_Part = tuple[BatchHeader, BatchPlacement, tuple[bytes | memoryview, ...]]
"""A batch to write: its header, where it lands, and the buffers holding its bytes."""


def wall_clock_ms() -> int:
    """Milliseconds since the Unix epoch (the default ``clock_ms``)."""
    return time.time_ns() // 1_000_000


class TabletLog(LogBase):
    """One tablet replica's log. Not thread-safe (see the module docstring). Use ``open``.

    Offset bookkeeping, epochs, checkpoints, rolls, truncation and retention are inherited from
    LogBase (log_base.py); this class adds opening, appends, reads, flushing and closing.
    """

    @classmethod
    def open(
        cls,
        directory: Path,
        config: LogConfig,
        *,
        clock_ms: Callable[[], int] = wall_clock_ms,
        files: FileCache | None = None,
        truncate_corrupt: bool = False,
        full_scan: bool = False,
        tail_budget: TailCacheBudget | None = None,
    ) -> TabletLog:
        """Open (creating if missing) and recover the log in ``directory`` (see recovery.py).

        ``files`` is the node's shared FileCache (a private one is made if None);
        ``tail_budget`` the node's shared bound on tail-cache memory (none if None). Raises
        CorruptSegment if a closed segment holds a corrupt batch; call again with
        ``truncate_corrupt=True`` to truncate the log just before the first corrupt batch
        (every batch of every segment is then checked) and re-fetch the rest from the leader.
        ``full_scan`` checks every batch's CRCs without truncating. Raises OSError.
        """
        owns = files is None
        cache = files if files is not None else FileCache()
        found = recover(
            directory, config, cache, truncate_corrupt=truncate_corrupt, full_scan=full_scan
        )
        self = cls(
            directory,
            config,
            files=cache,
            owns_files=owns,
            clock_ms=clock_ms,
            found=found,
            tail_budget=tail_budget,
        )
        self.checkpoint()
        return self

    # ------------------------------------------------------------------------- appends

    def append_as_leader(self, batches: bytes | memoryview, leader_epoch: int) -> AppendResult:
        """Append whole batches, assigning offsets from ``end_offset`` and stamping the epoch and
        the append time (monotonic per log) into each batch's 29-byte prefix.

        The bodies are not copied nor re-hashed: one ``writev`` of (new prefix, original body)
        pairs per request (per segment if it spans a roll). Every batch's CRCs are checked
        before anything is written. Raises CorruptBatch (bad or empty request), StaleLeaderEpoch
        (epoch older than the log's latest), DuplicateSequence / OutOfOrderSequence /
        InvalidProducerEpoch (idempotent producer checks); nothing is written then. Raises
        DiskFull / OSError if the write fails: nothing of the request is appended, except
        batches written before a segment roll inside the same request.
        """
        self._check_open()
        assert leader_epoch >= 0
        view = memoryview(batches)
        request = _parse_request(view)
        latest = self._epochs.latest_epoch
        if latest is not None and leader_epoch < latest:
            raise StaleLeaderEpoch(leader_epoch, latest)
        self._producers.check_request([h for _pos, h in request])
        now = max(self._clock_ms(), self._last_append_ms)
        self.maybe_roll(now)
        if latest != leader_epoch:
            self._epochs.assign(leader_epoch, self.end_offset)
        base = offset = self.end_offset
        parts: list[_Part] = []
        for pos, h in request:
            end = offset + h.record_count
            prefix = stamped_prefix(offset, h.batch_length, leader_epoch, now)
            body = view[pos + CRC_POS : pos + h.size]
            parts.append((h, (offset, end, h.size, now), (prefix, body)))
            offset = end
        self._write_parts(parts)
        self._last_append_ms = now
        return AppendResult(base, offset, now, offset - base, len(view))

    def append_as_follower(self, batches: bytes | memoryview) -> AppendResult:
        """Append whole batches that already carry offsets, epochs and append times, verbatim
        (one write per request, per segment if it spans a roll; no copy).

        The first batch must start at ``end_offset`` and each next one where the previous
        ended (NonContiguousAppend otherwise); both CRCs of every batch are checked first
        (CorruptBatch). As an exception, an empty log (start == end) accepts a first batch that
        merely contains ``end_offset`` (the leader's start offset fell inside a batch): the log
        restarts at that batch's base offset, keeping its start offset. Write failures raise as
        in append_as_leader.
        """
        self._check_open()
        view = memoryview(batches)
        request = _parse_request(view)
        first, last = request[0][1], request[-1][1]
        expected = first.base_offset
        for _pos, h in request:
            if h.base_offset != expected:
                raise NonContiguousAppend(expected, h.base_offset)
            expected = h.end_offset
        if self._start == self.end_offset and first.base_offset < self._start < first.end_offset:
            self._restart_at(first.base_offset)
        if first.base_offset != self.end_offset:
            raise NonContiguousAppend(self.end_offset, first.base_offset)
        self.maybe_roll(self._clock_ms())
        for _pos, h in request:
            if h.leader_epoch >= 0 and h.leader_epoch != self._epochs.latest_epoch:
                self._epochs.assign(h.leader_epoch, h.base_offset)
        self._write_parts([(h, _placement(h), (view[pos : pos + h.size],)) for pos, h in request])
        self._last_append_ms = max(self._last_append_ms, last.append_time_ms)
        return AppendResult(
            first.base_offset,
            last.end_offset,
            last.append_time_ms,
            last.end_offset - first.base_offset,
            len(view),
        )

    def _write_parts(self, parts: list[_Part]) -> None:
        """Write batches, one writev per segment, rolling between; update producer state."""
        self.stats.appends += 1
        start, pending = 0, 0
        for i, (_h, placed, _buffers) in enumerate(parts):
            if self._segments.needs_roll(pending, placed[2]):
                self._write_group(parts[start:i])
                self._roll()
                start, pending = i, 0
            pending += placed[2]
        self._write_group(parts[start:])

    def _write_group(self, parts: list[_Part]) -> None:
        if not parts:
            return
        position = self._segments.active.size
        self._segments.write(
            [b for _h, _p, buffers in parts for b in buffers], [placed for _h, placed, _b in parts]
        )
        for h, (base, end, size, _time), buffers in parts:
            self._producers.update(h, base, end)
            self.stats.appended_bytes += size
            self._tail.add(base, end, position, size, buffers)
            position += size

    def _restart_at(self, base_offset: int) -> None:
        log.info(
            "%s: empty log restarts at offset %d (start stays %d)",
            self._directory,
            base_offset,
            self._start,
        )
        self._segments.replace_all(base_offset)
        self._after_truncation(base_offset)

    # ------------------------------------------------------------------------- reads

    def read(
        self, offset: int, max_bytes: int, max_offset: int | None = None, *, from_disk: bool = False
    ) -> ReadResult:
        """Whole batches from the one holding ``offset``, all from one segment.

        At most ``max_bytes`` in total, except that one whole batch is returned even if it is
        larger; only batches ending at or below ``max_offset`` (exclusive; default end_offset)
        are returned, so a batch straddling it is not. Empty when ``offset`` is the end offset
        or nothing ends below ``max_offset``. Raises OffsetOutOfRange if ``offset`` is outside
        [start_offset, end_offset]; CorruptSegment if a returned batch fails its CRC.

        The newest batches come from memory (storage/tail_cache.py) unless ``from_disk``
        (the scrubber checks what the file holds).
        """
        self._check_open()
        start, end = self._start, self.end_offset
        if not start <= offset <= end:
            raise OffsetOutOfRange(offset, start, end)
        limit = end if max_offset is None else min(max_offset, end)
        if offset >= limit:
            return ReadResult(None, 0, 0, offset, offset)
        if not from_disk and self._tail.covers(offset):
            seg, cached = self._segments.active, self._tail.read(offset, max(max_bytes, 0), limit)
            found = None if cached is None else (seg, cached)
            self.stats.cached_reads += cached is not None
        else:
            found = self._segments.read(offset, max(max_bytes, 0), limit)
        if found is None:
            return ReadResult(None, 0, 0, offset, offset)
        seg, piece = found
        self.stats.reads += 1
        self.stats.read_bytes += piece.size
        return ReadResult(
            seg.path,
            piece.position,
            piece.size,
            piece.first_offset,
            piece.end_offset,
            piece.data,
            self._files,
        )

    def read_bytes(self, offset: int, max_bytes: int, max_offset: int | None = None) -> bytes:
        """``read(...).read_bytes()``: the batches' bytes."""
        return self.read(offset, max_bytes, max_offset).read_bytes()

    def offset_for_timestamp(self, timestamp_ms: int) -> int | None:
        """The first offset whose batch's append time is >= ``timestamp_ms``; None if none.

        Never below start_offset. Raises CorruptSegment.
        """
        self._check_open()
        found = self._segments.find_time(timestamp_ms, self._start)
        return None if found is None else max(found, self._start)

    # ------------------------------------------------------------------------- flush protocol

    def begin_flush(self) -> FlushTicket | None:
        """Loop thread: capture what the next fsync must cover; None if everything is flushed.

        The ticket owns duplicated fds, so rolls and closes may happen while it runs.
        """
        self._check_open()
        if self._flushed >= self.end_offset and not self._segments.has_unsynced_files:
            return None
        file_fds, dir_fds, drops = self._segments.take_sync_fds()
        return FlushTicket(self.end_offset, self._generation, file_fds, dir_fds, drops)

    def complete_flush(self, ticket: FlushTicket) -> None:
        """Loop thread: after ``ticket.run()`` succeeded, advance flushed_offset.

        A ticket taken before a truncation advances nothing (what it synced may be gone).
        """
        assert ticket.ran
        if self._closed or not ticket.succeeded:
            return
        self.stats.flushes += 1
        self.stats.fsyncs += ticket.fsync_count
        if ticket.generation == self._generation:
            self._flushed = max(self._flushed, min(ticket.end_offset, self.end_offset))

    def flush(self) -> None:
        """begin_flush, run and complete_flush inline (blocks on fsync). Raises OSError."""
        ticket = self.begin_flush()
        if ticket is not None:
            ticket.run()
            self.complete_flush(ticket)

    # ------------------------------------------------------------------------- lifecycle

    def close(self) -> None:
        """Flush, write indexes, producer snapshot, checkpoints and the clean-shutdown marker,
        close every fd. Idempotent; other methods raise LogClosed afterwards. Raises OSError
        (the fds are closed anyway, without the marker: the next open recovers)."""
        if self._closed:
            return
        try:
            self.flush()
            active = self._segments.active
            for fd in active.write_indexes(keep_open=True):
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            write_checkpoint(
                self._directory / layout.PRODUCER_STATE_FILE,
                PRODUCER_KIND,
                self._producers.snapshot_lines(self.end_offset),
            )
            self.checkpoint()
            write_checkpoint(
                self._directory / layout.CLEAN_SHUTDOWN_FILE, CLEAN_KIND, marker_lines(active)
            )
        finally:
            self._release()

    def delete(self) -> None:
        """Close without flushing and remove the directory (the tablet was deleted).

        The directory is first renamed to ``<name>.deleted`` so a crash never leaves a
        half-deleted log that looks valid.
        """
        if not self._closed:
            self._release()
        doomed = self._directory.with_name(self._directory.name + layout.DELETED_SUFFIX)
        if doomed.exists():
            shutil.rmtree(doomed)
        if self._directory.exists():
            self._directory.rename(doomed)
            fsync_directory(self._directory.parent)
            shutil.rmtree(doomed)

    def _release(self) -> None:
        self._closed = True
        self._tail.clear()
        self._segments.close()
        if self._owns_files:
            self._files.close()


def _placement(h: BatchHeader) -> BatchPlacement:
    return h.base_offset, h.end_offset, h.size, h.append_time_ms


def _parse_request(view: memoryview) -> Request:
    """(position, header) of each batch of a request, every CRC checked. Raises CorruptBatch."""
    if not len(view):
        raise CorruptBatch("the request holds no batch")
    request: Request = []
    pos, end = 0, len(view)
    while pos < end:
        h = validate_batch(view, pos)
        request.append((pos, h))
        pos += h.size
    return request
