"""TabletLog appends and reads: offsets, stamping, limits, rolls, follower appends."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from storage.errors import NonContiguousAppend, OffsetOutOfRange, StaleLeaderEpoch
from storage.log import TabletLog
from tests.storage.conftest import FakeClock, make_batch, read_all, values_of
from wire.batch import CRC_POS, build_batch, iter_headers, parse_header
from wire.errors import CorruptBatch

OpenLog = Callable[..., TabletLog]


def test_empty_log_has_start_equal_end_and_reads_nothing(open_log: OpenLog) -> None:
    log = open_log()
    assert (log.start_offset, log.end_offset, log.high_watermark) == (0, 0, 0)
    assert log.latest_epoch is None
    result = log.read(0, 1000)
    assert result.is_empty and result.read_bytes() == b""
    assert (result.first_offset, result.end_offset) == (0, 0)
    with pytest.raises(OffsetOutOfRange) as err:
        log.read(1, 1000)
    assert (err.value.start_offset, err.value.end_offset) == (0, 0)


def test_leader_append_assigns_offsets_and_stamps_only_the_prefix(
    open_log: OpenLog, clock: FakeClock
) -> None:
    log = open_log()
    first = make_batch(3, tag=1, base_offset=999, leader_epoch=77)
    second = make_batch(2, tag=2)
    r1 = log.append_as_leader(first, leader_epoch=4)
    r2 = log.append_as_leader(second, leader_epoch=4)
    assert (r1.base_offset, r1.end_offset, r1.record_count) == (0, 3, 3)
    assert (r2.base_offset, r2.end_offset) == (3, 5)
    assert r1.append_time_ms == clock.now_ms and r1.size_bytes == len(first)
    stored = read_all(log)
    assert len(stored) == len(first) + len(second)
    (p1, h1), (p2, h2) = list(iter_headers(stored))
    assert (h1.base_offset, h1.leader_epoch, h1.append_time_ms) == (0, 4, clock.now_ms)
    assert (h2.base_offset, h2.leader_epoch) == (3, 4)
    # Everything the producer wrote after the stamped prefix is byte-identical.
    assert stored[p1 + CRC_POS : p2] == first[CRC_POS:]
    assert stored[p2 + CRC_POS :] == second[CRC_POS:]
    assert values_of(stored)[0][1] == b"v1-0-v1-0-v1-0-v1-0-"
    assert log.leader_epochs == ((4, 0),)


def test_multi_batch_request_is_one_writev(open_log: OpenLog) -> None:
    log = open_log(segment_bytes=1 << 20)
    request = b"".join(make_batch(2, tag=i) for i in range(10))
    writes = log.stats.writes
    result = log.append_as_leader(request, leader_epoch=0)
    assert (result.base_offset, result.end_offset, result.record_count) == (0, 20, 20)
    assert log.stats.writes == writes + 1
    assert [o for o, _ in values_of(read_all(log))] == list(range(20))


@pytest.mark.parametrize("damage", ["body", "prefix", "truncated", "trailing", "empty"])
def test_bad_request_is_rejected_before_anything_is_written(open_log: OpenLog, damage: str) -> None:
    log = open_log()
    log.append_as_leader(make_batch(2), 0)
    good = make_batch(2, tag=5)
    bad = bytearray(good + make_batch(1, tag=6))
    if damage == "body":
        bad[-3] ^= 0x40
    elif damage == "prefix":
        bad[len(good) + 20] ^= 1  # append_time of the second batch: header_crc fails
    elif damage == "truncated":
        bad = bad[:-1]
    elif damage == "trailing":
        bad += b"\x00" * 10
    else:
        bad = bytearray()
    size, end = log.size_bytes, log.end_offset
    with pytest.raises(CorruptBatch):
        log.append_as_leader(bytes(bad), 0)
    assert (log.size_bytes, log.end_offset) == (size, end)


def test_append_time_never_goes_backwards(open_log: OpenLog, clock: FakeClock) -> None:
    log = open_log()
    t0 = log.append_as_leader(make_batch(), 0).append_time_ms
    clock.advance(-5000)
    assert log.append_as_leader(make_batch(), 0).append_time_ms == t0
    clock.advance(6000)
    assert log.append_as_leader(make_batch(), 0).append_time_ms == t0 + 1000


def test_stale_leader_epoch_is_rejected(open_log: OpenLog) -> None:
    log = open_log()
    log.append_as_leader(make_batch(), 3)
    with pytest.raises(StaleLeaderEpoch):
        log.append_as_leader(make_batch(), 2)
    assert log.end_offset == 3


def test_read_returns_whole_batches_within_max_bytes_but_at_least_one(open_log: OpenLog) -> None:
    log = open_log(segment_bytes=1 << 20)
    sizes = [len(make_batch(3, tag=i)) for i in range(5)]
    for i in range(5):
        log.append_as_leader(make_batch(3, tag=i), 0)
    one = log.read(0, 1)  # smaller than a batch: still one whole batch
    assert (one.first_offset, one.end_offset, one.size) == (0, 3, sizes[0])
    two = log.read(0, sizes[0] + sizes[1] + sizes[2] - 1)
    assert (two.end_offset, two.size) == (6, sizes[0] + sizes[1])
    mid = log.read(4, 10_000)  # offset 4 is inside the batch [3, 6)
    assert (mid.first_offset, mid.end_offset) == (3, 15)
    assert values_of(mid.read_bytes())[0][0] == 3
    assert log.read(15, 100).is_empty


def test_read_respects_max_offset_and_never_splits_a_batch(open_log: OpenLog) -> None:
    log = open_log()
    for i in range(4):
        log.append_as_leader(make_batch(3, tag=i), 0)
    assert log.read(0, 10_000, max_offset=7).end_offset == 6  # [6, 9) straddles 7
    assert log.read(6, 10_000, max_offset=7).is_empty
    assert log.read(0, 10_000, max_offset=2).is_empty
    assert log.read(0, 10_000, max_offset=100).end_offset == 12


def test_read_below_start_or_past_end_is_out_of_range(open_log: OpenLog) -> None:
    log = open_log()
    for _ in range(30):
        log.append_as_leader(make_batch(3, 40), 0)
    log.set_high_watermark(log.end_offset)
    log.advance_start_offset(30)
    with pytest.raises(OffsetOutOfRange) as err:
        log.read(29, 100)
    assert (err.value.requested, err.value.start_offset, err.value.end_offset) == (29, 30, 90)
    with pytest.raises(OffsetOutOfRange):
        log.read(91, 100)


def test_segments_roll_at_segment_bytes_and_big_batches_get_their_own(open_log: OpenLog) -> None:
    log = open_log(segment_bytes=2048)
    small = make_batch(3, 100)
    for _ in range(10):
        log.append_as_leader(small, 0)
    per_segment = 2048 // len(small)
    assert log.segment_bases[:2] == [0, 3 * per_segment]
    big = make_batch(2, 3000)  # bigger than a segment
    result = log.append_as_leader(big, 0)
    assert log.segment_bases[-1] == result.base_offset
    log.append_as_leader(small, 0)
    assert log.segment_bases[-1] == result.end_offset
    assert log.read(result.base_offset, 1).read_bytes()[CRC_POS:] == big[CRC_POS:]
    reads = [log.read(o, 1 << 20) for o in (0, result.base_offset)]
    assert all(r.path is not None and r.path.name.endswith(".log") for r in reads)
    assert reads[0].end_offset <= log.segment_bases[1]  # one segment per read


def test_segments_roll_by_age(open_log: OpenLog, clock: FakeClock) -> None:
    log = open_log(segment_ms=1000, segment_bytes=1 << 20)
    log.append_as_leader(make_batch(), 0)
    clock.advance(999)
    log.append_as_leader(make_batch(), 0)
    assert log.segment_bases == [0]
    clock.advance(1)
    log.append_as_leader(make_batch(), 0)
    assert log.segment_bases == [0, 6]
    clock.advance(5000)
    assert log.maybe_roll() is True
    assert log.maybe_roll() is False  # the new active segment is empty
    assert log.segment_bases == [0, 6, 9]


def test_follower_append_is_verbatim_and_contiguous(open_log: OpenLog, tmp_path: Path) -> None:
    leader = open_log()
    for epoch in (1, 1, 2):
        leader.append_as_leader(make_batch(2, tag=epoch), epoch)
    data = read_all(leader)
    follower = TabletLog.open(tmp_path / "follower", leader.config)
    try:
        result = follower.append_as_follower(data)
        assert (result.base_offset, result.end_offset, result.size_bytes) == (0, 6, len(data))
        assert read_all(follower) == data
        assert follower.leader_epochs == ((1, 0), (2, 4))
        more = leader.append_as_leader(make_batch(1), 2)
        extra = leader.read(more.base_offset, 1000).read_bytes()
        with pytest.raises(NonContiguousAppend) as err:
            follower.append_as_follower(data)  # overlap
        assert (err.value.expected, err.value.got) == (6, 0)
        gap = build_batch([(None, b"x")], base_offset=9)
        with pytest.raises(NonContiguousAppend):
            follower.append_as_follower(gap)
        follower.append_as_follower(extra)
        assert read_all(follower) == read_all(leader)
    finally:
        follower.close()


def test_follower_append_rejects_corrupt_bytes(open_log: OpenLog, tmp_path: Path) -> None:
    leader = open_log()
    leader.append_as_leader(make_batch(2), 1)
    data = bytearray(read_all(leader))
    data[5] ^= 1  # base offset: covered by header_crc
    follower = TabletLog.open(tmp_path / "follower", leader.config)
    try:
        with pytest.raises(CorruptBatch):
            follower.append_as_follower(bytes(data))
        assert follower.end_offset == 0 and follower.size_bytes == 0
    finally:
        follower.close()


def test_empty_follower_accepts_a_batch_straddling_its_start(
    open_log: OpenLog, tmp_path: Path
) -> None:
    leader = open_log()
    leader.append_as_leader(make_batch(10), 1)
    data = leader.read(0, 1000).read_bytes()
    follower = TabletLog.open(tmp_path / "follower", leader.config)
    try:
        follower.truncate_fully_and_start_at(4)  # leader's start offset fell inside [0, 10)
        follower.append_as_follower(data)
        assert (follower.start_offset, follower.end_offset) == (4, 10)
        assert follower.read(4, 1000).read_bytes() == data
    finally:
        follower.close()


def test_offset_for_timestamp(open_log: OpenLog, clock: FakeClock) -> None:
    log = open_log(segment_bytes=1024)
    times = []
    for i in range(40):
        times.append(log.append_as_leader(make_batch(2, tag=i), 0).append_time_ms)
        clock.advance(10)
    assert len(log.segment_bases) > 3
    assert log.offset_for_timestamp(0) == 0
    assert log.offset_for_timestamp(times[17]) == 34
    assert log.offset_for_timestamp(times[17] - 5) == 34
    assert log.offset_for_timestamp(times[-1] + 1) is None
    log.set_high_watermark(log.end_offset)
    log.advance_start_offset(35)
    assert log.offset_for_timestamp(times[3]) == 35


def test_stored_batches_keep_producer_fields(open_log: OpenLog) -> None:
    log = open_log()
    log.append_as_leader(
        make_batch(4, producer_id=7, producer_epoch=1, base_sequence=0, create_time_ms=123), 0
    )
    h = parse_header(log.read_bytes(0, 1000))
    assert (h.producer_id, h.producer_epoch, h.base_sequence, h.first_timestamp) == (7, 1, 0, 123)
