"""Loading a log directory on open: what is checked, what is repaired, what is reported.

Order of work (each step says why):

1. Leftovers of interrupted work are finished: ``*.deleted`` files (a deletion that was decided,
   see segments.py) and ``*.tmp`` checkpoints are removed; index files without a ``.log`` too.
2. Segments entirely below the ``log-start-offset`` checkpoint are deleted (retention or
   ``advance_start_offset`` checkpoints the new start before deleting, so a crash in between
   leaves them).
3. Closed segments get a cheap check, not a full CRC scan (that would be slow for big logs):
   their index files are sanity-checked (monotonic, inside the file), the first batch header is
   checked, and the batches after the last index entry are walked with both CRCs up to the end
   of the file, which must be exactly the next segment's base offset. An index that fails is
   rebuilt by walking the whole segment with CRCs. Corruption found in a closed segment is not
   repaired silently: ``CorruptSegment`` is raised, or with ``truncate_corrupt`` the log is
   truncated just before the corrupt batch (so the replica re-fetches from the leader). Reads
   verify CRCs too, so corruption the cheap check misses is still never served.
   With ``full_scan`` (implied by ``truncate_corrupt``) every batch of every segment is checked.
4. The active (last) segment: after a clean shutdown (``clean-shutdown`` marker matching its size)
   it is checked like a closed one; otherwise the index may lag the log after a crash, so it is
   rebuilt rather than trusted: every batch is validated (length, both CRCs, offset continuity)
   and the file is cut (ftruncate, fsync) at the first torn or corrupt batch.
5. Checkpoints are reconciled: start offset = max(checkpoint, first segment base); the high
   watermark is clamped into [start, end] (it may be ahead of a log that lost its tail); leader
   epochs starting after the end are dropped (the cache may be ahead), and the cache is rebuilt
   from batch headers when its file is missing or garbled; producer state is loaded from its
   snapshot and the batches after it replayed from their headers.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from storage import layout
from storage.checkpoint import (
    fsync_directory,
    read_checkpoint,
    read_int_checkpoint,
    remove_file,
)
from storage.config import LogConfig
from storage.epochs import LeaderEpochCache
from storage.errors import CorruptSegment
from storage.files import FileCache
from storage.log_checkpoints import HW_KIND, START_KIND, LogCheckpoints, read_clean_marker
from storage.producers import KIND as PRODUCER_KIND
from storage.producers import ProducerStateManager, wall_clock_ms
from storage.segment import Segment
from storage.segment_check import SegmentDamaged, check_closed, recover_active
from wire.batch import BatchHeader

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Recovered:
    """Everything TabletLog.open needs; the last segment's write fd is open."""

    segments: list[Segment]
    start_offset: int
    high_watermark: int
    epochs: LeaderEpochCache
    producers: ProducerStateManager
    clean: bool
    truncated_bytes: int
    index_rebuilds: int
    saved_high_watermark: int | None  # what the checkpoint file held
    checkpoints: LogCheckpoints  # what the checkpoint files hold, for the log to update


def recover(
    directory: Path,
    config: LogConfig,
    files: FileCache,
    *,
    truncate_corrupt: bool,
    full_scan: bool,
    clock_ms: Callable[[], int] = wall_clock_ms,
) -> Recovered:
    """Load (creating if missing) and repair the log in ``directory``; see the module docstring.

    ``clock_ms`` (ms since the epoch) decides which idle producers have expired.

    Raises CorruptSegment for corruption in a closed segment unless ``truncate_corrupt``;
    OSError for I/O failures.
    """
    directory.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(directory)
    marker = read_clean_marker(directory)
    start_ckpt = read_int_checkpoint(directory / layout.LOG_START_OFFSET_FILE, START_KIND)
    hw_ckpt = read_int_checkpoint(directory / layout.HIGH_WATERMARK_FILE, HW_KIND)
    bases = layout.list_segment_bases(directory)
    if start_ckpt is not None:
        while len(bases) > 1 and bases[1] <= start_ckpt:
            _delete_segment_files(directory, bases.pop(0))
    stats = _Stats(full=full_scan or truncate_corrupt)
    segments = _load_segments(
        directory,
        config,
        files,
        bases,
        empty_base=start_ckpt or 0,
        marker=marker,
        stats=stats,
        truncate_corrupt=truncate_corrupt,
    )
    start = max(start_ckpt if start_ckpt is not None else 0, segments[0].base_offset)
    if start > segments[-1].end_offset:
        log.warning("%s: every segment is below the start offset %d; emptying", directory, start)
        for seg in segments:
            _delete_segment_files(directory, seg.base_offset)
        segments = [Segment(directory, start)]
    segments[-1].open_writer(files, create=not segments[-1].path.exists())
    end = segments[-1].end_offset
    hw = min(max(hw_ckpt if hw_ckpt is not None else start, start), end)
    producers = ProducerStateManager(
        max_producers=config.max_producer_ids,
        expiration_ms=config.producer_id_expiration_ms,
        clock_ms=clock_ms,
    )
    epochs, producers, snapshot_offset = _load_states(
        directory, segments, files, start, producers, clean=stats.clean
    )
    _make_durable(directory, segments[-1], marker_existed=marker is not None, clean=stats.clean)
    return Recovered(
        segments,
        start,
        hw,
        epochs,
        producers,
        stats.clean,
        stats.truncated,
        stats.rebuilds,
        hw_ckpt,
        LogCheckpoints(
            directory,
            saved_start_offset=start_ckpt,
            saved_high_watermark=hw_ckpt,
            producer_snapshot_offset=snapshot_offset,
        ),
    )


@dataclass(slots=True)
class _Stats:
    full: bool
    clean: bool = False
    truncated: int = 0
    rebuilds: int = 0


def _load_segments(
    directory: Path,
    config: LogConfig,
    files: FileCache,
    bases: list[int],
    *,
    empty_base: int,
    marker: tuple[int, int, int] | None,
    stats: _Stats,
    truncate_corrupt: bool,
) -> list[Segment]:
    segments = [Segment(directory, b) for b in bases] or [Segment(directory, empty_base)]
    interval = config.index_interval_bytes
    for i, seg in enumerate(segments[:-1]):
        try:
            stats.rebuilds += check_closed(
                seg, files, segments[i + 1].base_offset, interval, full=stats.full
            )
            continue
        except SegmentDamaged as err:
            damage = err
        if not truncate_corrupt:
            raise CorruptSegment(str(seg.path), damage.position, damage.reason)
        log.error("%s: truncating the log at byte %d: %s", seg.path, damage.position, damage.reason)
        for later in segments[i + 1 :]:
            _delete_segment_files(directory, later.base_offset)
        fsync_directory(directory)
        del segments[i + 1 :]
        break
    last = segments[-1]
    end_ckpt = _marker_end(marker, last)
    if end_ckpt is not None and not stats.full:
        try:
            stats.rebuilds += check_closed(last, files, end_ckpt, interval, full=False)
            stats.clean = True
            return segments
        except SegmentDamaged as damage:
            log.warning("%s: clean-shutdown state does not match (%s)", last.path, damage.reason)
    stats.truncated += recover_active(last, files, interval)
    return segments


def _marker_end(marker: tuple[int, int, int] | None, last: Segment) -> int | None:
    if marker is None:
        return None
    end, base, size = marker
    try:
        actual = last.path.stat().st_size
    except FileNotFoundError:
        return None
    return end if base == last.base_offset and size == actual else None


def _load_states(
    directory: Path,
    segments: list[Segment],
    files: FileCache,
    start: int,
    producers: ProducerStateManager,
    *,
    clean: bool,
) -> tuple[LeaderEpochCache, ProducerStateManager, int | None]:
    end = segments[-1].end_offset
    epochs, epochs_ok = LeaderEpochCache.load(directory / layout.LEADER_EPOCHS_FILE)
    replay_from, snapshot_offset = _load_producers(directory, segments, end, producers)
    rebuild_epochs = not epochs_ok and end > segments[0].base_offset
    if rebuild_epochs:
        log.warning("%s: rebuilding the leader-epoch cache from batch headers", directory)
        epochs = LeaderEpochCache(epochs.path)
    first = segments[0].base_offset if rebuild_epochs else replay_from
    changed = False

    def visit(h: BatchHeader) -> None:
        nonlocal changed
        if h.base_offset >= replay_from:
            producers.update(h, h.base_offset, h.end_offset, h.append_time_ms)
        latest = epochs.latest_epoch
        if (rebuild_epochs or not clean) and h.leader_epoch > (-1 if latest is None else latest):
            changed |= epochs.assign(h.leader_epoch, h.base_offset, persist=False)

    replay_headers(segments, files, first, visit)
    changed |= epochs.truncate_from_end(end, keep_equal=True)
    changed |= epochs.truncate_from_start(start)
    if changed or rebuild_epochs:
        epochs.persist()
    producers.drop_below(start)
    producers.expire_idle()
    return epochs, producers, snapshot_offset


def _load_producers(
    directory: Path, segments: list[Segment], end: int, producers: ProducerStateManager
) -> tuple[int, int | None]:
    """Load the snapshot into ``producers`` (empty when unusable); return (offset to replay
    headers from, offset of the usable snapshot or None)."""
    lines = read_checkpoint(directory / layout.PRODUCER_STATE_FILE, PRODUCER_KIND)
    loaded = producers.load_snapshot(lines) if lines is not None else None
    if loaded is not None and segments[0].base_offset <= loaded <= end:
        return loaded, loaded
    # No usable snapshot: rebuild from the last two segments (bounded work); older producers
    # are forgotten (see producers.py).
    producers.clear()
    return segments[max(len(segments) - 2, 0)].base_offset, None


def replay_headers(
    segments: list[Segment],
    files: FileCache,
    from_offset: int,
    visit: Callable[[BatchHeader], None],
) -> None:
    """Call ``visit(header)`` for every batch ending after ``from_offset``, in offset order."""
    for seg in segments:
        if seg.end_offset <= from_offset or seg.is_empty:
            continue
        offset = max(from_offset, seg.base_offset)
        _walk, batches = seg.walk_from(seg.pread_via(files), offset, window_bytes=64 * 1024)
        for _pos, h in batches:
            if h.end_offset > from_offset:
                visit(h)


def _make_durable(directory: Path, active: Segment, *, marker_existed: bool, clean: bool) -> None:
    if not clean:
        # Recovered bytes may sit only in the page cache (a process crash): make them durable so
        # that flushed_offset == end_offset is true from the start.
        assert active.fd is not None
        os.fdatasync(active.fd)
    if marker_existed:
        # From now on the files change; a crash must not find a marker vouching for them.
        remove_file(directory / layout.CLEAN_SHUTDOWN_FILE)
    fsync_directory(directory)


def _remove_leftovers(directory: Path) -> None:
    names = {p.name for p in directory.iterdir()}
    for name in names:
        if name.endswith((layout.DELETED_SUFFIX, layout.TMP_SUFFIX)):
            (directory / name).unlink(missing_ok=True)
    for name in names:
        stem, dot, suffix = name.partition(".")
        if (
            dot
            and f".{suffix}" in (layout.INDEX_SUFFIX, layout.TIME_INDEX_SUFFIX)
            and (f"{stem}{layout.LOG_SUFFIX}" not in names)
        ):
            (directory / name).unlink(missing_ok=True)


def _delete_segment_files(directory: Path, base_offset: int) -> None:
    for path in layout.segment_files(directory, base_offset):
        path.unlink(missing_ok=True)
