"""Unit tests of the parts TabletLog is composed of: offsets rules, head counts, Segment state,
the log's checkpoint files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from storage import layout
from storage.checkpoint import read_int_checkpoint
from storage.files import FileCache
from storage.log_checkpoints import HW_KIND, START_KIND, LogCheckpoints, read_clean_marker
from storage.offsets import LogOffsets
from storage.producers import ProducerStateManager
from storage.retention import count_below
from storage.segment import Boundary, Segment
from tests.storage.conftest import make_batch
from wire.batch import parse_header

Op = Callable[[LogOffsets], None]


@pytest.mark.parametrize(
    ("name", "before", "op", "after"),
    [
        # (start, hw, flushed, generation) before and after
        ("hw rises", (0, 5, 8, 0), lambda o: o.raise_high_watermark(7, 10), (0, 7, 8, 0)),
        (
            "hw clamped to end",
            (0, 5, 8, 0),
            lambda o: o.raise_high_watermark(99, 10),
            (0, 10, 8, 0),
        ),
        ("hw never lowered", (0, 5, 8, 0), lambda o: o.raise_high_watermark(3, 10), (0, 5, 8, 0)),
        ("hw at least start", (4, 4, 8, 0), lambda o: o.raise_high_watermark(1, 10), (4, 4, 8, 0)),
        ("truncation clamps", (0, 9, 9, 0), lambda o: o.truncated(6), (0, 6, 6, 1)),
        ("truncation above", (0, 3, 2, 1), lambda o: o.truncated(6), (0, 3, 2, 2)),
        ("restart below start", (5, 5, 5, 0), lambda o: o.truncated(3), (5, 5, 3, 1)),
        ("started over", (0, 9, 4, 0), lambda o: o.started_over(20), (20, 20, 4, 1)),
        ("started over below", (10, 12, 12, 0), lambda o: o.started_over(3), (3, 3, 3, 1)),
        ("head removed", (0, 2, 1, 0), lambda o: o.head_removed(5, 10), (5, 5, 5, 0)),
        ("head removed, hw ahead", (0, 8, 9, 0), lambda o: o.head_removed(5, 10), (5, 8, 9, 0)),
        ("flush advances", (0, 0, 2, 0), lambda o: o.flushed_up_to(7, 0, 10), (0, 0, 7, 0)),
        ("flush clamped", (0, 0, 2, 0), lambda o: o.flushed_up_to(12, 0, 10), (0, 0, 10, 0)),
        (
            "flush of old generation",
            (0, 0, 2, 1),
            lambda o: o.flushed_up_to(7, 0, 10),
            (0, 0, 2, 1),
        ),
    ],
)
def test_offsets_rules(
    name: str, before: tuple[int, int, int, int], op: Op, after: tuple[int, int, int, int]
) -> None:
    offsets = _with_generation(before)
    op(offsets)
    got = (offsets.start, offsets.high_watermark, offsets.flushed, offsets.generation)
    assert got == after, name


def _with_generation(values: tuple[int, int, int, int]) -> LogOffsets:
    start, hw, flushed, generation = values
    offsets = LogOffsets(start, hw, flushed)
    for _ in range(generation):
        offsets.truncated(max(hw, flushed))  # bumps the generation, changes nothing else
    return offsets


def _segments(tmp_path: Path, bases: list[int], end: int) -> list[Segment]:
    segments = []
    for base, nxt in zip(bases, [*bases[1:], end], strict=True):
        seg = Segment(tmp_path, base)
        if nxt > base:
            seg.note_batch(0, base, nxt, size=100, time_ms=base, interval_bytes=4096)
        segments.append(seg)
    return segments


@pytest.mark.parametrize(
    ("offset", "count"), [(0, 0), (9, 0), (10, 1), (19, 1), (25, 2), (30, 2), (99, 2)]
)
def test_count_below_never_counts_the_active_segment(
    tmp_path: Path, offset: int, count: int
) -> None:
    assert count_below(_segments(tmp_path, [0, 10, 20], 30), offset) == count


def test_segment_tracks_batches_and_page_cache_ranges(tmp_path: Path) -> None:
    seg = Segment(tmp_path, 100)
    assert seg.is_empty and (seg.end_offset, seg.first_time_ms, seg.max_time_ms) == (100, None, -1)
    seg.note_batch(0, 100, 103, size=300, time_ms=50, interval_bytes=200)
    seg.note_batch(300, 103, 105, size=200, time_ms=40, interval_bytes=200)
    assert (seg.size, seg.end_offset, seg.first_time_ms, seg.max_time_ms) == (500, 105, 50, 50)
    assert seg.mark_uncached(400, 1024) is None  # too few bytes to bother
    assert seg.mark_uncached(400, 1) == (0, 400)
    assert seg.mark_uncached(400, 1) is None  # already evicted
    assert seg.mark_uncached(500, 1) == (400, 100)
    seg.reset()
    assert (seg.size, seg.end_offset, seg.first_time_ms, seg.max_time_ms) == (0, 100, None, -1)


def test_segment_writes_reads_and_cuts_its_file(tmp_path: Path) -> None:
    files = FileCache()
    seg = Segment(tmp_path, 0)
    seg.open_writer(files, create=True)
    offset = 0
    for i, time_ms in enumerate([10, 30, 20]):
        batch = make_batch(count=2, tag=i, base_offset=offset, append_time_ms=time_ms)
        h = parse_header(batch)
        placed = (offset, offset + 2, h.size, time_ms)
        seg.append([batch], [placed], interval_bytes=1)
        offset += 2
    pread = seg.pread_via(files)
    piece = seg.read_slice(pread, 3, 1 << 20, 6, verify=True)
    assert piece is not None and (piece.first_offset, piece.end_offset) == (2, 6)
    assert seg.find_time(pread, 25) == 2
    boundary = seg.find_boundary(pread, 5)
    assert boundary.offset == 4  # the walk starts at the index entry there: no time seen
    seg.cut_at(boundary)
    assert (seg.end_offset, seg.size, seg.max_time_ms) == (4, boundary.position, 30)
    assert seg.path.stat().st_size == boundary.position
    seg.cut_at(Boundary(0, 0, -1, 0))
    assert seg.is_empty and seg.first_time_ms is None and seg.max_time_ms == -1
    fd = seg.release_writer(files)
    assert fd is not None and seg.fd is None
    files.close()


def test_log_checkpoints_write_only_what_changed(tmp_path: Path) -> None:
    checkpoints = LogCheckpoints(
        tmp_path, saved_start_offset=0, saved_high_watermark=5, producer_snapshot_offset=None
    )
    checkpoints.save(5, 0)
    assert not (tmp_path / layout.HIGH_WATERMARK_FILE).exists()  # unchanged: not written
    checkpoints.save(7, 2)
    assert read_int_checkpoint(tmp_path / layout.HIGH_WATERMARK_FILE, HW_KIND) == 7
    assert read_int_checkpoint(tmp_path / layout.LOG_START_OFFSET_FILE, START_KIND) == 2
    snapshot = tmp_path / layout.PRODUCER_STATE_FILE
    checkpoints.save_producers(ProducerStateManager(), 10, sync=False)
    checkpoints.drop_producers_beyond(10)
    assert snapshot.exists()  # as of 10: still right after a cut to 10
    checkpoints.drop_producers_beyond(9)
    assert not snapshot.exists()
    seg = Segment(tmp_path, 4)
    seg.note_batch(0, 4, 9, size=123, time_ms=1, interval_bytes=4096)
    checkpoints.mark_clean(seg)
    assert read_clean_marker(tmp_path) == (9, 4, 123)
