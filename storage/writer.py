"""LogWriter: everything that writes batches to a log's active segment, and rolls to a new one.

Two append paths share one write step:

* leader: offsets are assigned from the end offset, and the leader epoch and the append time
  (monotonic per log) are stamped into each batch's 29-byte prefix; the bodies are neither copied
  nor re-hashed (one ``writev`` of (new prefix, original body) pairs);
* follower: batches that already carry offsets, epochs and append times are written verbatim
  after checking that they continue the log.

The write step writes one ``writev`` per segment, rolling between segments when a batch does not
fit (``segment_bytes``), and records each written batch in the producer state and the tail cache.
A segment is also rolled by age (``segment_ms``) before a write, or on demand; every roll writes
a producer-state snapshot as of the roll point. The work per request is per batch, never per
record.

Not thread-safe: owned by one TabletLog on the event-loop thread.
"""

from __future__ import annotations

from collections.abc import Callable

from storage.epochs import LeaderEpochCache
from storage.errors import NonContiguousAppend
from storage.log_checkpoints import LogCheckpoints
from storage.producers import ProducerStateManager
from storage.results import AppendResult, LogStats
from storage.segment import BatchPlacement
from storage.segments import SegmentSet
from storage.tail_cache import TailCache
from storage.trimming import LogTrimmer
from wire.batch import CRC_POS, BatchHeader, stamped_prefix, validate_batch
from wire.errors import CorruptBatch

Request = list[tuple[int, BatchHeader]]
"""(position in the request, header) of each batch of an append request."""

Part = tuple[BatchHeader, BatchPlacement, tuple[bytes | memoryview, ...]]
"""A batch to write: its header, where it lands, and the buffers holding its bytes."""


class LogWriter:
    """The append paths and rolls of one log (see the module docstring)."""

    def __init__(
        self,
        segments: SegmentSet,
        tail: TailCache,
        epochs: LeaderEpochCache,
        producers: ProducerStateManager,
        checkpoints: LogCheckpoints,
        trimmer: LogTrimmer,
        stats: LogStats,
        clock_ms: Callable[[], int],
    ) -> None:
        self._segments = segments
        self._tail = tail
        self._epochs = epochs
        self._producers = producers
        self._checkpoints = checkpoints
        self._trimmer = trimmer
        self._stats = stats
        self._clock_ms = clock_ms
        #: The newest append time written: leader appends never stamp an older one.
        self._last_append_ms = max((s.max_time_ms for s in segments.segments[-2:]), default=-1)

    # ------------------------------------------------------------------------- appends

    def append_as_leader(self, batches: bytes | memoryview, leader_epoch: int) -> AppendResult:
        """Stamp and write whole batches (see TabletLog.append_as_leader)."""
        assert leader_epoch >= 0
        view = memoryview(batches)
        request = parse_request(view)
        self._epochs.reject_stale(leader_epoch)
        self._producers.check_request([h for _pos, h in request])
        now = max(self._clock_ms(), self._last_append_ms)
        self.maybe_roll(now)
        base = offset = self._segments.end_offset
        if self._epochs.latest_epoch != leader_epoch:
            self._epochs.assign(leader_epoch, base)
        parts: list[Part] = []
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
        """Write whole batches verbatim (see TabletLog.append_as_follower)."""
        view = memoryview(batches)
        request = parse_request(view)
        first, last = request[0][1], request[-1][1]
        expected = first.base_offset
        for _pos, h in request:
            if h.base_offset != expected:
                raise NonContiguousAppend(expected, h.base_offset)
            expected = h.end_offset
        self._trimmer.restart_for_straddling_batch(first.base_offset, first.end_offset)
        if first.base_offset != self._segments.end_offset:
            raise NonContiguousAppend(self._segments.end_offset, first.base_offset)
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

    def _write_parts(self, parts: list[Part]) -> None:
        """Write batches, one writev per segment, rolling between; update producer state."""
        self._stats.appends += 1
        start, pending = 0, 0
        for i, (_h, placed, _buffers) in enumerate(parts):
            if self._segments.needs_roll(pending, placed[2]):
                self._write_group(parts[start:i])
                self._roll()
                start, pending = i, 0
            pending += placed[2]
        self._write_group(parts[start:])

    def _write_group(self, parts: list[Part]) -> None:
        if not parts:
            return
        position = self._segments.active.size
        self._segments.write(
            [b for _h, _p, buffers in parts for b in buffers], [placed for _h, placed, _b in parts]
        )
        stats, tail, producers = self._stats, self._tail, self._producers
        for h, (base, end, size, append_time), buffers in parts:
            producers.update(h, base, end, append_time)
            stats.appended_bytes += size
            tail.add(base, end, position, size, buffers)
            position += size

    # ------------------------------------------------------------------------- rolls

    def roll(self) -> bool:
        """Start a new segment now (if the active one is not empty); return whether it did."""
        if self._segments.active.is_empty:
            return False
        self._roll()
        return True

    def maybe_roll(self, now_ms: int | None = None) -> bool:
        """Roll the active segment if its first batch is ``segment_ms`` old at ``now_ms`` (the
        clock's time if None, read only when it matters); return whether it did."""
        seg, limit = self._segments.active, self._segments.config.segment_ms
        first_time = seg.first_time_ms
        if seg.is_empty or limit is None or first_time is None:
            return False
        now = self._clock_ms() if now_ms is None else now_ms
        if now - first_time < limit:
            return False
        self._roll()
        return True

    def _roll(self) -> None:
        self._segments.roll()
        self._tail.clear()
        self._checkpoints.save_producers(self._producers, self._segments.end_offset, sync=False)


def _placement(h: BatchHeader) -> BatchPlacement:
    return h.base_offset, h.end_offset, h.size, h.append_time_ms


def parse_request(view: memoryview) -> Request:
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
