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
checkpoint.py, log_checkpoints.py, epochs.py and producers.py (checkpoints), recovery.py (what
open checks).

Parts, each owned by one TabletLog and composed here (TabletLog checks that the log is open and
holds the contracts; the parts do the work):

* SegmentSet (segments.py): the segment files, reads and writes of them, rolls, cuts, deletions;
* TailCache (tail_cache.py): the newest batches in memory, for tail reads;
* LogOffsets (offsets.py): start offset, high watermark, flushed offset and their invariants;
* LogWriter (writer.py): the leader and follower append paths and rolls;
* LogReader (log_reader.py): reads, from the tail cache or the files, and lookups by time;
* LogTrimmer (trimming.py): truncation at the end, retention and start-offset moves at the head;
* LeaderEpochCache (epochs.py), ProducerStateManager (producers.py), LogCheckpoints
  (log_checkpoints.py): the state kept beside the segments, and its files.

Threads: TabletLog is not thread-safe. Call every method from one thread (the event loop), except
``FlushTicket.run`` (flush.py), which may run on any thread while the loop keeps appending.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

from storage import layout
from storage.checkpoint import fsync_directory
from storage.config import LogConfig
from storage.errors import LogClosed
from storage.files import FileCache
from storage.flush import FlushTicket
from storage.log_reader import LogReader
from storage.offsets import LogOffsets
from storage.producers import ProducerStateManager
from storage.recovery import Recovered, recover
from storage.results import AppendResult, LogStats, ReadResult
from storage.segments import SegmentSet
from storage.tail_cache import TailCache, TailCacheBudget
from storage.trimming import LogTrimmer
from storage.writer import LogWriter


def wall_clock_ms() -> int:
    """Milliseconds since the Unix epoch (the default ``clock_ms``)."""
    return time.time_ns() // 1_000_000


class TabletLog:
    """One tablet replica's log. Not thread-safe (see the module docstring). Use ``open``."""

    def __init__(
        self,
        directory: Path,
        config: LogConfig,
        *,
        files: FileCache,
        owns_files: bool,
        clock_ms: Callable[[], int],
        found: Recovered,
        tail_budget: TailCacheBudget | None = None,
    ) -> None:
        self._owns_files = owns_files
        self._clock_ms = clock_ms
        self.stats = stats = LogStats(
            recovered_truncated_bytes=found.truncated_bytes, index_rebuilds=found.index_rebuilds
        )
        self._segments = segments = SegmentSet(directory, config, files, found.segments, stats)
        self._tail = tail = TailCache(config.tail_cache_bytes, tail_budget)  # newest batches
        end = segments.end_offset
        self._offsets = offsets = LogOffsets(found.start_offset, found.high_watermark, end)
        self._epochs = epochs = found.epochs
        self._producers = producers = found.producers
        self._checkpoints = checkpoints = found.checkpoints
        self._trimmer = LogTrimmer(segments, tail, offsets, epochs, producers, checkpoints)
        self._writer = LogWriter(
            segments, tail, epochs, producers, checkpoints, self._trimmer, stats, clock_ms
        )
        self._reader = LogReader(segments, tail, offsets, stats)
        #: Recovery cut the log below its checkpointed high watermark: this replica lost records
        #: that were committed (a damaged file). It must not lead before it has them again.
        self.lost_committed = (found.saved_high_watermark or 0) > end
        self._closed = False

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
            directory,
            config,
            cache,
            truncate_corrupt=truncate_corrupt,
            full_scan=full_scan,
            clock_ms=clock_ms,
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

    # ------------------------------------------------------------------------- properties

    @property
    def directory(self) -> Path:
        """The log's directory."""
        return self._segments.directory

    @property
    def config(self) -> LogConfig:
        """The log's storage settings."""
        return self._segments.config

    @property
    def files(self) -> FileCache:
        """The FileCache reads go through (for ``sendfile`` of a ReadResult)."""
        return self._segments.files

    @property
    def start_offset(self) -> int:
        """First readable offset."""
        return self._offsets.start

    @property
    def end_offset(self) -> int:
        """Offset of the next record to be appended."""
        return self._segments.end_offset

    @property
    def high_watermark(self) -> int:
        """Exclusive: offsets below it are committed."""
        return self._offsets.high_watermark

    @property
    def flushed_offset(self) -> int:
        """Exclusive: offsets below it are durable (fsynced)."""
        return self._offsets.flushed

    @property
    def latest_epoch(self) -> int | None:
        """The newest leader epoch in the epoch cache, None if none."""
        return self._epochs.latest_epoch

    @property
    def leader_epochs(self) -> tuple[tuple[int, int], ...]:
        """The epoch cache: (epoch, start offset) pairs, oldest first."""
        return self._epochs.entries

    @property
    def size_bytes(self) -> int:
        """Bytes of all segment files."""
        return self._segments.size_bytes

    @property
    def segment_bases(self) -> list[int]:
        """Base offsets of the segments, oldest first (the last is the active one)."""
        return [s.base_offset for s in self._segments.segments]

    @property
    def producers(self) -> ProducerStateManager:
        """Idempotent-producer state (read-only use)."""
        return self._producers

    @property
    def generation(self) -> int:
        """Incremented by every truncation: data below ``end_offset`` may have changed."""
        return self._offsets.generation

    @property
    def is_closed(self) -> bool:
        """Whether close() or delete() was called."""
        return self._closed

    # ------------------------------------------------------------------------- epochs, HW

    def end_offset_for_epoch(self, epoch: int) -> tuple[int, int]:
        """(largest known epoch <= ``epoch``, exclusive end offset of that epoch) (KIP-279).

        The end is the next known epoch's start offset, or end_offset for the latest epoch;
        (-1, -1) if ``epoch`` is below every known epoch.
        """
        self._check_open()
        return self._epochs.end_offset_for(epoch, self.end_offset)

    def assign_epoch(self, epoch: int, start_offset: int) -> None:
        """Record that leader ``epoch`` starts at ``start_offset`` (a new leader passes its end
        offset). Idempotent. Raises StaleLeaderEpoch for an epoch older than the latest and
        ValueError for a start offset beyond end_offset."""
        self._check_open()
        if start_offset > self.end_offset:
            raise ValueError(f"epoch start {start_offset} is beyond the end {self.end_offset}")
        self._epochs.reject_stale(epoch)
        self._epochs.assign(epoch, start_offset)

    def set_high_watermark(self, offset: int) -> None:
        """Raise the high watermark to ``offset`` clamped into [start_offset, end_offset].

        Never lowers it (only truncation does). Persisted by checkpoint() and close().
        """
        self._check_open()
        self._offsets.raise_high_watermark(offset, self.end_offset)

    def checkpoint(self) -> None:
        """Persist the high watermark and start offset (atomically; only what changed)."""
        self._check_open()
        self._checkpoints.save(self._offsets.high_watermark, self._offsets.start)

    # ------------------------------------------------------------------------- appends, rolls

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
        return self._writer.append_as_leader(batches, leader_epoch)

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
        return self._writer.append_as_follower(batches)

    def roll(self) -> bool:
        """Start a new segment now (if the active one is not empty); return whether it did."""
        self._check_open()
        return self._writer.roll()

    def maybe_roll(self, now_ms: int | None = None) -> bool:
        """Roll the active segment if its first batch is ``segment_ms`` old; return whether."""
        self._check_open()
        return self._writer.maybe_roll(now_ms)

    # ------------------------------------------------------------------------- trimming

    def truncate_to(self, offset: int) -> None:
        """Drop every offset >= ``offset``; more precisely, truncate to the largest batch
        boundary <= ``offset`` (the start of the batch holding it), since batches are never
        split. No-op if ``offset >= end_offset``. Below start_offset (or if the boundary is),
        this is truncate_fully_and_start_at. Fixes indexes, epochs, producer state; the high
        watermark becomes min(HW, new end). Raises CorruptSegment, OSError.
        """
        self._check_open()
        self._trimmer.truncate_to(offset)

    def truncate_fully_and_start_at(self, offset: int) -> None:
        """Delete everything and start an empty log at ``offset`` (start == end == HW)."""
        self._check_open()
        self._trimmer.truncate_fully_and_start_at(offset)

    def advance_start_offset(self, offset: int) -> None:
        """Raise start_offset to ``offset`` (a follower whose leader's start moved), deleting
        segments entirely below it; beyond end_offset this is truncate_fully_and_start_at."""
        self._check_open()
        self._trimmer.advance_start_offset(offset)

    def apply_retention(self, now_ms: int | None = None) -> int:
        """Delete closed segments older than retention_ms (by their largest append time) and
        the oldest ones while the log is larger than retention_bytes; never the active segment
        nor a segment with offsets at or above the high watermark. Rolls by segment_ms first.
        Crash-safe: the new start offset is checkpointed before files are renamed to
        ``.deleted`` and removed. Returns the number of segments deleted.
        """
        self._check_open()
        now = self._clock_ms() if now_ms is None else now_ms
        self._writer.maybe_roll(now)
        return self._trimmer.apply_retention(now)

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
        return self._reader.read(offset, max_bytes, max_offset, from_disk=from_disk)

    def read_bytes(self, offset: int, max_bytes: int, max_offset: int | None = None) -> bytes:
        """``read(...).read_bytes()``: the batches' bytes."""
        return self.read(offset, max_bytes, max_offset).read_bytes()

    def offset_for_timestamp(self, timestamp_ms: int) -> int | None:
        """The first offset whose batch's append time is >= ``timestamp_ms``; None if none.

        Never below start_offset. Raises CorruptSegment.
        """
        self._check_open()
        return self._reader.offset_for_timestamp(timestamp_ms)

    # ------------------------------------------------------------------------- flush protocol

    def begin_flush(self) -> FlushTicket | None:
        """Loop thread: capture what the next fsync must cover; None if everything is flushed.

        The ticket owns duplicated fds, so rolls and closes may happen while it runs.
        """
        self._check_open()
        end = self._segments.end_offset
        if self._offsets.flushed >= end and not self._segments.has_unsynced_files:
            return None
        file_fds, dir_fds, drops = self._segments.take_sync_fds()
        return FlushTicket(end, self._offsets.generation, file_fds, dir_fds, drops)

    def complete_flush(self, ticket: FlushTicket) -> None:
        """Loop thread: after ``ticket.run()`` succeeded, advance flushed_offset.

        A ticket taken before a truncation advances nothing (what it synced may be gone).
        """
        assert ticket.ran
        if self._closed or not ticket.succeeded:
            return
        self.stats.flushes += 1
        self.stats.fsyncs += ticket.fsync_count
        self._offsets.flushed_up_to(ticket.end_offset, ticket.generation, self.end_offset)

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
            self._segments.seal_active_indexes()
            self._checkpoints.save_producers(self._producers, self.end_offset)
            self.checkpoint()
            self._checkpoints.mark_clean(self._segments.active)
        finally:
            self._release()

    def delete(self) -> None:
        """Close without flushing and remove the directory (the tablet was deleted).

        The directory is first renamed to ``<name>.deleted`` so a crash never leaves a
        half-deleted log that looks valid.
        """
        if not self._closed:
            self._release()
        directory = self.directory
        doomed = directory.with_name(directory.name + layout.DELETED_SUFFIX)
        if doomed.exists():
            shutil.rmtree(doomed)
        if directory.exists():
            directory.rename(doomed)
            fsync_directory(directory.parent)
            shutil.rmtree(doomed)

    def _release(self) -> None:
        self._closed = True
        self._tail.clear()
        self._segments.close()
        if self._owns_files:
            self._segments.files.close()

    def _check_open(self) -> None:
        if self._closed:
            raise LogClosed(f"log {self.directory} is closed")
