"""Truncation, epochs, high watermark, retention, start offset, flush protocol, lifecycle."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from storage import layout
from storage.checkpoint import read_int_checkpoint
from storage.errors import LogClosed, OffsetOutOfRange, StaleLeaderEpoch
from storage.log import TabletLog
from tests.storage.conftest import FakeClock, make_batch, read_all, values_of

OpenLog = Callable[..., TabletLog]


def fill(log: TabletLog, batches: int, *, epoch: int = 0, count: int = 3) -> None:
    for i in range(batches):
        log.append_as_leader(make_batch(count, 40, tag=i), epoch)


def test_truncate_mid_batch_goes_to_the_batch_start(open_log: OpenLog) -> None:
    log = open_log()
    fill(log, 10)
    log.set_high_watermark(30)
    log.truncate_to(14)  # inside [12, 15)
    assert (log.end_offset, log.high_watermark) == (12, 12)
    assert [o for o, _ in values_of(read_all(log))] == list(range(12))
    log.append_as_leader(make_batch(1, tag=99), 0)
    assert values_of(read_all(log, 12)) == [(12, make_value(99))]
    log.truncate_to(100)  # beyond the end: no-op
    assert log.end_offset == 13


def make_value(tag: int) -> bytes:
    return values_of(make_batch(1, tag=tag))[0][1] or b""


def test_truncate_into_a_closed_segment_deletes_later_ones(
    open_log: OpenLog, tmp_path: Path
) -> None:
    log = open_log(segment_bytes=1024)
    fill(log, 40)
    bases = log.segment_bases
    assert len(bases) > 4
    cut = bases[2] + 4
    log.truncate_to(cut)
    assert log.segment_bases == bases[:3]
    assert log.end_offset == bases[2] + 3
    names = sorted(p.name for p in (tmp_path / "log").iterdir() if p.suffix == ".log")
    assert names == [f"{b:020d}.log" for b in bases[:3]]
    fill(log, 5)
    assert [o for o, _ in values_of(read_all(log))] == list(range(log.end_offset))


def test_truncate_at_a_segment_base_leaves_it_empty_and_active(open_log: OpenLog) -> None:
    log = open_log(segment_bytes=1024)
    fill(log, 20)
    bases = log.segment_bases
    log.truncate_to(bases[1])
    assert log.segment_bases == bases[:2] and log.end_offset == bases[1]
    assert log.read(bases[1], 100).is_empty


def test_truncate_below_start_starts_over(open_log: OpenLog) -> None:
    log = open_log(segment_bytes=1024)
    fill(log, 20)
    log.set_high_watermark(log.end_offset)
    log.advance_start_offset(30)
    log.truncate_to(10)
    assert (log.start_offset, log.end_offset, log.high_watermark) == (10, 10, 10)
    assert log.leader_epochs == ()


def test_truncation_fixes_the_epoch_cache(open_log: OpenLog) -> None:
    log = open_log()
    fill(log, 2, epoch=1)
    fill(log, 2, epoch=3)
    fill(log, 2, epoch=5)
    assert list(log.leader_epochs) == [(1, 0), (3, 6), (5, 12)]
    log.truncate_to(12)
    assert list(log.leader_epochs) == [(1, 0), (3, 6)]
    assert log.end_offset_for_epoch(5) == (3, 12)
    log.truncate_to(10)
    assert list(log.leader_epochs) == [(1, 0), (3, 6)] and log.end_offset == 9
    log.truncate_to(7)  # the boundary is 6: no epoch-3 batch is left
    assert list(log.leader_epochs) == [(1, 0)] and log.end_offset == 6


def test_end_offset_for_epoch_follows_kip_279(open_log: OpenLog) -> None:
    log = open_log()
    assert log.end_offset_for_epoch(0) == (-1, -1)
    fill(log, 2, epoch=2)
    fill(log, 1, epoch=4)
    log.assign_epoch(7, log.end_offset)
    assert list(log.leader_epochs) == [(2, 0), (4, 6), (7, 9)]
    assert log.end_offset_for_epoch(1) == (-1, -1)
    assert log.end_offset_for_epoch(2) == (2, 6)
    assert log.end_offset_for_epoch(3) == (2, 6)
    assert log.end_offset_for_epoch(4) == (4, 9)
    assert log.end_offset_for_epoch(7) == (7, 9)
    assert log.end_offset_for_epoch(9) == (7, 9)


def test_assign_epoch_is_idempotent_and_rejects_stale_epochs(open_log: OpenLog) -> None:
    log = open_log()
    fill(log, 1, epoch=1)
    log.assign_epoch(2, 3)
    log.assign_epoch(2, 3)
    assert list(log.leader_epochs) == [(1, 0), (2, 3)]
    with pytest.raises(StaleLeaderEpoch):
        log.assign_epoch(1, 3)
    with pytest.raises(ValueError, match="beyond"):
        log.assign_epoch(3, 4)
    log.assign_epoch(3, 3)  # epoch 2 never got a batch: replaced
    assert list(log.leader_epochs) == [(1, 0), (3, 3)]


def test_high_watermark_is_clamped_monotonic_and_checkpointed(open_log: OpenLog) -> None:
    log = open_log()
    fill(log, 3)
    log.set_high_watermark(100)
    assert log.high_watermark == 9
    log.set_high_watermark(4)
    assert log.high_watermark == 9
    log.checkpoint()
    path = log.directory / layout.HIGH_WATERMARK_FILE
    assert read_int_checkpoint(path, "high-watermark") == 9
    log.close()
    assert open_log().high_watermark == 9


def test_retention_by_bytes_keeps_the_active_segment_and_uncommitted_data(
    open_log: OpenLog,
) -> None:
    log = open_log(segment_bytes=1024, retention_bytes=2048, retention_ms=None)
    fill(log, 40)
    assert log.apply_retention() == 0  # nothing is committed yet
    log.set_high_watermark(log.end_offset)
    deleted = log.apply_retention()
    assert deleted > 0
    assert log.size_bytes <= 2048 + 1024
    assert log.start_offset == log.segment_bases[0]
    with pytest.raises(OffsetOutOfRange):
        log.read(0, 100)
    assert [o for o, _ in values_of(read_all(log))] == list(range(log.start_offset, 120))
    start_file = log.directory / layout.LOG_START_OFFSET_FILE
    assert read_int_checkpoint(start_file, "log-start-offset") == log.start_offset
    assert not list(log.directory.glob("*.deleted"))


def test_retention_by_time_uses_each_segments_newest_batch(
    open_log: OpenLog, clock: FakeClock
) -> None:
    log = open_log(segment_bytes=1024, retention_ms=10_000, segment_ms=None)
    fill(log, 20)
    clock.advance(5_000)
    fill(log, 20)
    log.set_high_watermark(log.end_offset)
    bases = log.segment_bases
    clock.advance(5_001)  # the first batches are now 10 001 ms old
    deleted = log.apply_retention()
    assert 0 < deleted < len(bases)
    first_kept = log.segment_bases[0]
    assert log.offset_for_timestamp(0) == first_kept
    clock.advance(100_000)
    log.apply_retention()
    assert log.segment_bases == [bases[-1]]  # only the active segment survives


def test_retention_rolls_old_active_segment_first(open_log: OpenLog, clock: FakeClock) -> None:
    log = open_log(segment_bytes=1 << 20, retention_ms=10_000, segment_ms=1000)
    fill(log, 5)
    log.set_high_watermark(log.end_offset)
    clock.advance(20_000)
    assert log.apply_retention() == 1
    assert (log.start_offset, log.end_offset) == (15, 15)


def test_advance_start_offset_deletes_whole_segments_below(open_log: OpenLog) -> None:
    log = open_log(segment_bytes=1024)
    fill(log, 40)
    bases = log.segment_bases
    log.advance_start_offset(bases[2] + 1)
    assert log.segment_bases == bases[2:]
    assert log.start_offset == bases[2] + 1 and log.high_watermark == bases[2] + 1
    log.advance_start_offset(5)  # backwards: ignored
    assert log.start_offset == bases[2] + 1
    log.advance_start_offset(1000)
    assert (log.start_offset, log.end_offset, log.segment_bases) == (1000, 1000, [1000])


def test_start_offset_survives_reopen(open_log: OpenLog) -> None:
    log = open_log(segment_bytes=1024)
    fill(log, 40)
    log.advance_start_offset(50)
    log.close()
    log = open_log(segment_bytes=1024)
    assert log.start_offset == 50
    with pytest.raises(OffsetOutOfRange):
        log.read(49, 10)


def test_flush_protocol_tracks_flushed_offset(open_log: OpenLog) -> None:
    log = open_log(fsync="always")
    assert log.begin_flush() is None
    fill(log, 2)
    ticket = log.begin_flush()
    assert ticket is not None and ticket.end_offset == 6
    fill(log, 1)  # appends while the ticket is in flight are not covered by it
    ticket.run()
    log.complete_flush(ticket)
    assert log.flushed_offset == 6
    log.flush()
    assert log.flushed_offset == 9 and log.begin_flush() is None


def test_roll_and_close_while_a_ticket_is_in_flight(open_log: OpenLog) -> None:
    log = open_log(fsync="always", segment_bytes=1024)
    fill(log, 3)
    ticket = log.begin_flush()
    assert ticket is not None
    fill(log, 20)  # rolls several segments
    assert len(log.segment_bases) > 2
    log.close()
    ticket.run()  # the ticket's fds are its own: still valid after close
    log.complete_flush(ticket)


def test_a_ticket_from_before_a_truncation_advances_nothing(open_log: OpenLog) -> None:
    log = open_log(fsync="always")
    fill(log, 4)
    ticket = log.begin_flush()
    assert ticket is not None
    log.truncate_to(3)
    fill(log, 3)
    ticket.run()
    log.complete_flush(ticket)
    assert log.flushed_offset == 0
    log.flush()
    assert log.flushed_offset == log.end_offset == 12


def test_closed_log_raises_log_closed(open_log: OpenLog) -> None:
    log = open_log()
    fill(log, 1)
    log.close()
    log.close()  # idempotent
    with pytest.raises(LogClosed):
        log.append_as_leader(make_batch(), 0)
    with pytest.raises(LogClosed):
        log.read(0, 10)


def test_delete_removes_the_directory(open_log: OpenLog, tmp_path: Path) -> None:
    log = open_log()
    fill(log, 3)
    log.delete()
    assert not (tmp_path / "log").exists()
    assert not (tmp_path / "log.deleted").exists()
    with pytest.raises(LogClosed):
        log.end_offset_for_epoch(0)


def test_private_file_cache_is_closed_with_the_log(open_log: OpenLog) -> None:
    log = open_log(segment_bytes=1024)
    fill(log, 30)
    read_all(log)
    assert log.files.open_count > 0
    fds_before = len(os.listdir("/proc/self/fd"))
    log.close()
    assert log.files.open_count == 0
    assert len(os.listdir("/proc/self/fd")) < fds_before
