"""Bounds of the idempotent-producer state: LRU eviction and idle expiry (storage/producers.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from storage.checkpoint import read_checkpoint, write_checkpoint
from storage.errors import DuplicateSequence
from storage.layout import PRODUCER_STATE_FILE
from storage.log import TabletLog
from storage.producers import KIND, ProducerStateManager
from tests.storage.conftest import FakeClock, crash, make_batch
from wire.batch import parse_header

OpenLog = Callable[..., TabletLog]
DAY_MS = 86_400_000
T0 = 1_700_000_000_000


def state_after(
    writes: list[tuple[int, int]], *, max_producers: int = 3, clock_ms: int = T0
) -> ProducerStateManager:
    """A state after ``(producer id, append time)`` writes, each the producer's next batch."""
    state = ProducerStateManager(
        max_producers=max_producers, expiration_ms=DAY_MS, clock_ms=lambda: clock_ms
    )
    sequences: dict[int, int] = {}
    for offset, (pid, at) in enumerate(writes):
        seq = sequences.get(pid, 0)
        sequences[pid] = seq + 1
        h = parse_header(make_batch(1, producer_id=pid, producer_epoch=0, base_sequence=seq))
        state.update(h, offset, offset + 1, at)
    return state


def remembered(state: ProducerStateManager) -> list[int]:
    """Producer ids, least recently written first (the snapshot's order)."""
    return [int(line.split()[0]) for line in state.snapshot_lines(0)[1:]]


@pytest.mark.parametrize(
    ("writes", "kept", "evicted"),
    [
        ([(1, T0), (2, T0), (3, T0)], [1, 2, 3], 0),  # at the bound: nothing evicted
        ([(1, T0), (2, T0), (3, T0), (4, T0)], [2, 3, 4], 1),  # the oldest goes
        ([(1, T0), (2, T0), (3, T0), (1, T0), (4, T0)], [3, 1, 4], 1),  # a write refreshes
        ([(1, T0), (2, T0), (3, T0), (4, T0), (5, T0), (6, T0)], [4, 5, 6], 3),
        ([(1, T0), (1, T0), (1, T0), (1, T0)], [1], 0),  # one producer's batches count once
    ],
)
def test_lru_eviction(writes: list[tuple[int, int]], kept: list[int], evicted: int) -> None:
    state = state_after(writes)
    assert remembered(state) == kept
    assert state.evicted == evicted


@pytest.mark.parametrize(
    ("writes", "now", "kept", "expired"),
    [
        ([(1, T0), (2, T0 + 10)], T0 + DAY_MS - 1, [1, 2], 0),  # just under a day idle
        ([(1, T0), (2, T0 + 10)], T0 + DAY_MS, [2], 1),  # exactly a day: expired
        ([(1, T0), (2, T0 + 10)], T0 + DAY_MS + 10, [], 2),
        ([(1, T0), (2, T0 + 10), (1, T0 + 20)], T0 + DAY_MS + 10, [1], 1),  # 1 wrote again
        ([(1, T0 + 5), (1, T0)], T0 + DAY_MS + 1, [1], 0),  # an older time never goes back
    ],
)
def test_idle_expiry(
    writes: list[tuple[int, int]], now: int, kept: list[int], expired: int
) -> None:
    state = state_after(writes, clock_ms=now)
    assert state.expire_idle() == expired
    assert sorted(remembered(state)) == kept and state.expired == expired


def test_no_expiration_keeps_idle_producers() -> None:
    state = ProducerStateManager(expiration_ms=None, clock_ms=lambda: T0 + 10 * DAY_MS)
    state.update(
        parse_header(make_batch(1, producer_id=1, producer_epoch=0, base_sequence=0)), 0, 1, T0
    )
    assert state.expire_idle() == 0 and len(state) == 1


@pytest.mark.parametrize(("max_producers", "expiration_ms"), [(0, DAY_MS), (1, 0), (1, -5)])
def test_bounds_must_be_positive(max_producers: int, expiration_ms: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        ProducerStateManager(max_producers=max_producers, expiration_ms=expiration_ms)


def test_snapshot_keeps_lru_order_and_load_applies_the_bound() -> None:
    state = state_after([(1, T0), (2, T0 + 1), (3, T0 + 2), (1, T0 + 3)])
    lines = state.snapshot_lines(4)
    assert [line.split()[:3] for line in lines[1:]] == [
        ["2", "0", str(T0 + 1)],
        ["3", "0", str(T0 + 2)],
        ["1", "0", str(T0 + 3)],
    ]
    smaller = ProducerStateManager(max_producers=2)
    assert smaller.load_snapshot(lines) == 4
    assert remembered(smaller) == [3, 1] and smaller.evicted == 1


def test_a_snapshot_without_write_times_counts_as_written_at_load() -> None:
    # the format before the bounds: "<pid> <epoch> <batches>"
    state = ProducerStateManager(clock_ms=lambda: T0)
    assert state.load_snapshot(["offset 4", "7 0 0:1:0:2 2:3:2:4"]) == 4
    entry = state.get(7)
    assert entry is not None and entry.last_write_ms == T0 and len(entry.batches) == 2


# --------------------------------------------------------------------------- through TabletLog


def pbatch(seq: int, pid: int) -> bytes:
    return make_batch(2, tag=seq, producer_id=pid, producer_epoch=0, base_sequence=seq)


def test_a_log_evicts_beyond_max_producer_ids(open_log: OpenLog) -> None:
    log = open_log(max_producer_ids=2)
    for pid in (1, 2, 3):
        log.append_as_leader(pbatch(0, pid), 0)
    assert log.producers.get(1) is None and log.producers.evicted == 1
    end = log.end_offset
    log.append_as_leader(pbatch(0, 1), 0)  # forgotten: accepted as new, not a duplicate
    assert log.end_offset == end + 2
    with pytest.raises(DuplicateSequence):
        log.append_as_leader(pbatch(0, 3), 0)


def test_idle_producers_expire_on_roll_and_on_open(open_log: OpenLog, clock: FakeClock) -> None:
    log = open_log(producer_id_expiration_ms=DAY_MS)
    log.append_as_leader(pbatch(0, 1), 0)
    clock.advance(DAY_MS - 1)
    log.append_as_leader(pbatch(0, 2), 0)
    clock.advance(1)
    assert log.roll()  # a day since producer 1 wrote: gone from the snapshot and the state
    assert log.producers.get(1) is None and log.producers.get(2) is not None
    lines = read_checkpoint(log.directory / PRODUCER_STATE_FILE, KIND)
    assert lines is not None and [line.split()[0] for line in lines[1:]] == ["2"]
    crash(log)
    clock.advance(DAY_MS)
    log = open_log(producer_id_expiration_ms=DAY_MS)  # expired on load (replay included)
    assert log.producers.get(2) is None and log.producers.expired == 1
    end = log.end_offset
    log.append_as_leader(pbatch(0, 2), 0)  # accepted as a new producer
    assert log.end_offset == end + 2


def test_an_old_snapshot_file_loads(open_log: OpenLog) -> None:
    log = open_log()
    log.append_as_leader(pbatch(0, 9), 0)
    log.close()
    path = log.directory / PRODUCER_STATE_FILE
    lines = read_checkpoint(path, KIND)
    assert lines is not None
    old = [
        lines[0],
        *(" ".join(p for i, p in enumerate(line.split()) if i != 2) for line in lines[1:]),
    ]
    write_checkpoint(path, KIND, old)
    log = open_log()
    with pytest.raises(DuplicateSequence):
        log.append_as_leader(pbatch(0, 9), 0)
