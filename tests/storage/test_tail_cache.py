"""TailCache: bounded, contiguous, read like a segment slice; the log keeps it consistent."""

from __future__ import annotations

from pathlib import Path

from storage.files import FileCache
from storage.log import TabletLog
from storage.manager import LogManager
from storage.tail_cache import MAX_ENTRIES, TailCache, TailCacheBudget
from tests.storage.conftest import make_batch, small_config, values_of


def test_reads_whole_entries_within_limits() -> None:
    cache = TailCache(max_bytes=1000)
    cache.add(10, 12, 0, 100, [b"a" * 40, b"b" * 60])
    cache.add(12, 15, 100, 100, [b"c" * 100])
    cache.add(15, 16, 200, 100, [b"d" * 100])
    assert not cache.covers(9) and cache.covers(10) and cache.covers(15) and not cache.covers(16)
    got = cache.read(13, max_bytes=150, limit=16)  # from the batch holding 13; one fits
    assert got is not None
    assert (got.position, got.size, got.first_offset, got.end_offset) == (100, 100, 12, 15)
    assert got.data == b"c" * 100
    got = cache.read(10, max_bytes=10_000, limit=15)  # the last batch ends above the limit
    assert got is not None and got.end_offset == 15
    assert got.data == b"a" * 40 + b"b" * 60 + b"c" * 100
    assert cache.read(15, max_bytes=0, limit=15) is None  # its first batch ends above the limit
    got = cache.read(15, max_bytes=0, limit=16)  # one batch even above max_bytes
    assert got is not None and got.size == 100


def test_bounded_by_bytes_and_entries_keeping_the_newest() -> None:
    cache = TailCache(max_bytes=250)
    for i in range(4):
        cache.add(i, i + 1, i * 100, 100, [b"x" * 100])
    assert not cache.covers(1) and cache.covers(2) and cache.covers(3)
    cache.add(4, 5, 400, 1000, [b"y" * 1000])  # larger than the bound: kept alone
    assert not cache.covers(3) and cache.covers(4)
    many = TailCache(max_bytes=1 << 30)
    for i in range(MAX_ENTRIES + 10):
        many.add(i, i + 1, i, 1, [b"z"])
    assert not many.covers(9) and many.covers(10)


def test_mutable_buffers_are_copied_when_added() -> None:
    cache = TailCache(max_bytes=1000)
    buffer = bytearray(b"a" * 10)
    cache.add(0, 1, 0, 20, [memoryview(buffer), b"b" * 10])
    buffer[:] = b"z" * 10  # the caller reuses its buffer
    got = cache.read(0, max_bytes=100, limit=1)
    assert got is not None and got.data == b"a" * 10 + b"b" * 10


def test_a_shared_budget_empties_the_least_recent_caches_first() -> None:
    budget = TailCacheBudget(max_bytes=300)
    idle, other, busy = (TailCache(1000, budget) for _ in range(3))
    idle.add(0, 1, 0, 100, [b"i" * 100])
    other.add(0, 1, 0, 100, [b"o" * 100])
    busy.add(0, 1, 0, 100, [b"b" * 100])
    assert budget.total == 300 and idle.covers(0)
    busy.add(1, 2, 100, 100, [b"b" * 100])  # over: the least recent cache goes whole
    assert not idle.covers(0) and other.covers(0) and busy.covers(0)
    assert budget.total == 300
    busy.add(2, 3, 200, 150, [b"b" * 150])  # over again: then the busy one trims its oldest
    assert not other.covers(0) and not busy.covers(0) and busy.covers(1)
    assert budget.total == 250
    busy.clear()
    assert budget.total == 0


def test_a_node_shares_one_budget_across_its_logs(tmp_path: Path) -> None:
    manager = LogManager(tmp_path, FileCache(), tail_cache_bytes=64 * 1024)
    config = small_config(segment_bytes=1 << 20)
    logs = [manager.open_log("events", t, config) for t in range(3)]
    for tablet_log in logs:
        for tag in range(8):
            tablet_log.append_as_leader(make_batch(count=4, value_size=1000, tag=tag), 0)
    assert manager.tail_budget.total <= 64 * 1024
    assert not logs[0]._tail.covers(0) and logs[2]._tail.covers(28)  # the last appender keeps
    for tablet_log in logs:  # whatever the cache holds, reads are right
        assert len(values_of(tablet_log.read(0, 1 << 20).read_bytes())) == 32
        tablet_log.close()
    assert manager.tail_budget.total == 0


def test_disabled_cache_holds_nothing() -> None:
    cache = TailCache(max_bytes=0)
    cache.add(0, 1, 0, 10, [b"0" * 10])
    assert not cache.covers(0)


def test_log_serves_the_tail_from_memory_and_forgets_it_on_roll_and_truncation(
    tmp_path: Path,
) -> None:
    log = TabletLog.open(tmp_path, small_config(segment_bytes=64 * 1024))
    for tag in range(4):
        log.append_as_leader(make_batch(count=2, tag=tag), leader_epoch=1)
    hits = log.stats.cached_reads
    data = log.read(2, 1 << 20).read_bytes()
    assert log.stats.cached_reads == hits + 1
    assert data == log.read(2, 1 << 20, from_disk=True).read_bytes()
    assert [o for o, _ in values_of(data)] == [2, 3, 4, 5, 6, 7]
    log.truncate_to(4)
    assert not log._tail.covers(2)
    log.append_as_leader(make_batch(count=2, tag=9), leader_epoch=2)
    assert (
        values_of(log.read(4, 1 << 20).read_bytes())[0][1]
        == values_of(make_batch(count=2, tag=9))[0][1]
    )
    log.roll()
    assert not log._tail.covers(4)
    log.close()
