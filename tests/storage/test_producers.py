"""Idempotent producer state: unit tests of ProducerStateManager and through TabletLog."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from storage.errors import DuplicateSequence, InvalidProducerEpoch, OutOfOrderSequence
from storage.log import TabletLog
from storage.producers import SEQUENCE_MODULUS, ProducerStateManager, last_sequence
from tests.storage.conftest import crash, make_batch, read_all
from wire.batch import parse_header
from wire.limits import MAX_BATCHES

OpenLog = Callable[..., TabletLog]


def pbatch(seq: int, count: int = 2, *, pid: int = 42, epoch: int = 0, tag: int = 0) -> bytes:
    return make_batch(count, tag=tag, producer_id=pid, producer_epoch=epoch, base_sequence=seq)


def test_duplicate_of_a_recent_batch_returns_the_original_offsets(open_log: OpenLog) -> None:
    log = open_log()
    first = log.append_as_leader(pbatch(0), 0)
    log.append_as_leader(pbatch(2), 0)
    size = log.size_bytes
    with pytest.raises(DuplicateSequence) as err:
        log.append_as_leader(pbatch(0), 0)
    assert (err.value.base_offset, err.value.end_offset) == (first.base_offset, first.end_offset)
    assert log.size_bytes == size


def test_only_the_last_five_batches_are_remembered(open_log: OpenLog) -> None:
    log = open_log()
    for i in range(MAX_BATCHES + 1):
        log.append_as_leader(pbatch(2 * i), 0)
    with pytest.raises(DuplicateSequence):
        log.append_as_leader(pbatch(2), 0)  # the second batch: still remembered
    with pytest.raises(OutOfOrderSequence):
        log.append_as_leader(pbatch(0), 0)  # the first: forgotten, so out of order


@pytest.mark.parametrize(
    ("seq", "epoch", "error"),
    [
        (5, 0, OutOfOrderSequence),
        (1, 0, OutOfOrderSequence),
        (3, 1, OutOfOrderSequence),
        (4, 0, None),
        (0, 1, None),
        (0, -1, InvalidProducerEpoch),
    ],
)
def test_sequence_and_epoch_rules(
    open_log: OpenLog, seq: int, epoch: int, error: type[Exception] | None
) -> None:
    log = open_log()
    log.append_as_leader(pbatch(0, epoch=0), 0)
    log.append_as_leader(pbatch(2, epoch=0), 0)
    if epoch < 0:  # make the remembered epoch 1, then write with epoch 0
        log.append_as_leader(pbatch(0, epoch=1), 0)
        epoch = 0
    end = log.end_offset
    if error is None:
        log.append_as_leader(pbatch(seq, epoch=epoch), 0)
        assert log.end_offset == end + 2
    else:
        with pytest.raises(error):
            log.append_as_leader(pbatch(seq, epoch=epoch), 0)
        assert log.end_offset == end


def test_unknown_producer_is_accepted_at_any_sequence(open_log: OpenLog) -> None:
    log = open_log()
    log.append_as_leader(pbatch(1000, pid=9), 0)
    log.append_as_leader(pbatch(1002, pid=9), 0)
    assert log.end_offset == 4


def test_multi_batch_requests(open_log: OpenLog) -> None:
    log = open_log()
    request = pbatch(0) + pbatch(2) + pbatch(0, pid=7)
    result = log.append_as_leader(request, 0)
    with pytest.raises(DuplicateSequence) as err:
        log.append_as_leader(request, 0)  # a retry of the whole request
    assert (err.value.base_offset, err.value.end_offset) == (result.base_offset, result.end_offset)
    with pytest.raises(OutOfOrderSequence):
        log.append_as_leader(pbatch(2) + pbatch(4), 0)  # retry mixed with new
    with pytest.raises(OutOfOrderSequence):
        log.append_as_leader(pbatch(4) + pbatch(7), 0)  # gap inside the request
    assert log.end_offset == result.end_offset
    log.append_as_leader(pbatch(4) + pbatch(6), 0)
    assert log.end_offset == result.end_offset + 4


def test_sequences_wrap_around(open_log: OpenLog) -> None:
    log = open_log()
    log.append_as_leader(pbatch(SEQUENCE_MODULUS - 2, count=3), 0)
    log.append_as_leader(pbatch(1), 0)
    h = parse_header(pbatch(SEQUENCE_MODULUS - 2, count=3))
    assert last_sequence(h) == 0


def test_state_survives_clean_reopen_and_crash(open_log: OpenLog) -> None:
    log = open_log(segment_bytes=1024)
    for i in range(30):
        log.append_as_leader(pbatch(2 * i, tag=i), 0)
    assert len(log.segment_bases) > 2
    log.close()
    log = open_log(segment_bytes=1024)
    with pytest.raises(DuplicateSequence):
        log.append_as_leader(pbatch(58, tag=29), 0)
    log.append_as_leader(pbatch(60), 0)
    crash(log)
    log = open_log(segment_bytes=1024)
    with pytest.raises(DuplicateSequence):
        log.append_as_leader(pbatch(60), 0)
    with pytest.raises(OutOfOrderSequence):
        log.append_as_leader(pbatch(64), 0)


def test_truncation_forgets_truncated_batches(open_log: OpenLog) -> None:
    log = open_log()
    log.append_as_leader(pbatch(0), 0)
    second = log.append_as_leader(pbatch(2), 0)
    log.truncate_to(second.base_offset)
    log.append_as_leader(pbatch(2, tag=5), 0)  # not a duplicate anymore
    assert log.end_offset == 4


def test_follower_appends_update_producer_state(open_log: OpenLog, tmp_path: Path) -> None:
    leader = open_log()
    leader.append_as_leader(pbatch(0), 0)
    follower = TabletLog.open(tmp_path / "f", leader.config)
    try:
        follower.append_as_follower(read_all(leader))
        with pytest.raises(DuplicateSequence):
            follower.append_as_leader(pbatch(0), 1)  # became leader: deduplicates at once
    finally:
        follower.close()


def test_manager_snapshot_round_trip_and_drop_below() -> None:
    state = ProducerStateManager()
    for i in range(7):
        state.update(parse_header(pbatch(2 * i)), 2 * i, 2 * i + 2, 1000 + i)
    state.update(parse_header(pbatch(0, pid=5, epoch=3)), 14, 16, 2000)
    lines = state.snapshot_lines(16)
    copy = ProducerStateManager()
    assert copy.load_snapshot(lines) == 16 and copy.snapshot_lines(16) == lines
    entry = copy.get(42)
    assert entry is not None and len(entry.batches) == MAX_BATCHES
    assert entry.last_write_ms == 1006
    copy.drop_below(14)
    assert copy.get(42) is None and copy.get(5) is not None
    assert ProducerStateManager().load_snapshot(["offset x"]) is None
    assert ProducerStateManager().load_snapshot(["offset 1", "1 2"]) is None
    assert ProducerStateManager().load_snapshot(["offset 1", "1 2 3"]) is None
