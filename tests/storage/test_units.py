"""Unit tests of the small storage modules: checkpoint, files, index, epochs, scan, layout."""

from __future__ import annotations

import logging
import os
import resource
from pathlib import Path

import pytest

from storage import files as files_module
from storage.checkpoint import (
    decode_checkpoint,
    encode_checkpoint,
    read_checkpoint,
    read_int_checkpoint,
    write_checkpoint,
)
from storage.config import LogConfig
from storage.epochs import LeaderEpochCache
from storage.files import FileCache, pread_exact, raise_nofile_limit, write_all
from storage.index import OffsetIndex, TimeIndex
from storage.layout import list_segment_bases, parse_segment_name, segment_path
from storage.retention import retention_count
from storage.scan import BatchWalk
from storage.segment import Segment
from wire.batch import build_batch
from wire.errors import CorruptBatch


def test_checkpoint_round_trip_and_atomic_replace(tmp_path: Path) -> None:
    path = tmp_path / "cp"
    write_checkpoint(path, "thing", ["1 2", "3 4"])
    assert read_checkpoint(path, "thing") == ["1 2", "3 4"]
    write_checkpoint(path, "thing", [])
    assert read_checkpoint(path, "thing") == []
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize(
    "garble",
    [b"", b"\n", b"tabletlog-checkpoint 1 thing\n5\n", b"\x00" * 40, "flip", "kind", "version"],
)
def test_garbled_checkpoint_reads_as_none_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, garble: bytes | str
) -> None:
    path = tmp_path / "cp"
    good = encode_checkpoint("thing", ["5"])
    if garble == "flip":
        data = good.replace(b"\n5\n", b"\n6\n")
    elif garble == "kind":
        data = encode_checkpoint("other", ["5"])
    elif garble == "version":
        data = good.replace(b"checkpoint 1", b"checkpoint 2")
    else:
        assert isinstance(garble, bytes)
        data = garble
    path.write_bytes(data)
    with caplog.at_level(logging.WARNING):
        assert read_int_checkpoint(path, "thing") is None
    assert "garbled" in caplog.text
    assert decode_checkpoint(good, "thing") == ["5"]


def test_missing_checkpoint_is_silent(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert read_checkpoint(tmp_path / "nope", "thing") is None
    assert caplog.text == ""


def test_file_cache_is_bounded_and_lru(tmp_path: Path) -> None:
    paths = []
    for i in range(5):
        p = tmp_path / f"f{i}"
        p.write_bytes(bytes([i]) * 10)
        paths.append(p)
    cache = FileCache(capacity=2)
    assert cache.pread(paths[0], 3, 0) == b"\x00\x00\x00"
    cache.pread(paths[1], 1, 0)
    cache.pread(paths[0], 1, 0)  # 0 is now most recent
    cache.pread(paths[2], 1, 0)  # evicts 1
    assert cache.open_count == 2
    opens = cache.opens
    cache.pread(paths[0], 1, 0)
    assert cache.opens == opens
    cache.pread(paths[1], 1, 0)
    assert cache.opens == opens + 1
    cache.close()
    assert cache.open_count == 0


def test_file_cache_keeps_pinned_fds_and_uses_writers(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"aaaa")
    b.write_bytes(b"bbbb")
    cache = FileCache(capacity=1)
    with cache.acquire(a) as fd:
        cache.pread(b, 1, 0)  # over capacity, but a is pinned
        cache.evict(a)
        assert os.pread(fd, 4, 0) == b"aaaa"  # still open until released
    with pytest.raises(OSError):  # the fd was closed on release
        os.fstat(fd)
    fd_w = os.open(tmp_path / "w", os.O_RDWR | os.O_CREAT)
    os.write(fd_w, b"written")
    cache.register_writer(tmp_path / "w", fd_w)
    opens = cache.opens
    assert cache.pread(tmp_path / "w", 7, 0) == b"written"
    assert cache.opens == opens
    cache.unregister_writer(tmp_path / "w")
    cache.close()
    os.close(fd_w)


@pytest.mark.parametrize("iov_max", [2, 1024])
def test_write_all_handles_partial_writes_and_iov_max(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, iov_max: int
) -> None:
    real = os.writev
    calls = []

    def stingy(fd: int, buffers: list[bytes | memoryview]) -> int:
        calls.append(len(buffers))
        return real(fd, [memoryview(buffers[0])[:3]])  # at most 3 bytes per call

    monkeypatch.setattr(os, "writev", stingy)
    monkeypatch.setattr(files_module, "_IOV_MAX", iov_max)
    fd = os.open(tmp_path / "out", os.O_RDWR | os.O_CREAT)
    try:
        assert write_all(fd, [b"hello", b"", b"world", b"!"]) == 11
        assert pread_exact(fd, 100, 0) == b"helloworld!"
        assert max(calls) <= iov_max
    finally:
        os.close(fd)


def test_raise_nofile_limit_reaches_the_hard_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        new = raise_nofile_limit()
        assert new >= soft
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == new
        if hard != resource.RLIM_INFINITY:
            assert new == min(hard, 1 << 20)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_offset_index_lookup_truncate_and_sanity() -> None:
    index = OffsetIndex()
    for rel, pos in [(10, 4100), (20, 8300), (35, 12500)]:
        index.append(rel, pos)
    assert index.floor(5) == (0, 0)
    assert index.floor(10) == (10, 4100)
    assert index.floor(34) == (20, 8300)
    data = index.to_bytes()
    loaded = OffsetIndex.from_bytes(data, file_size=13000, offset_span=40)
    assert loaded is not None and loaded.to_bytes() == data
    assert OffsetIndex.from_bytes(data, file_size=12500, offset_span=40) is None  # past the end
    assert OffsetIndex.from_bytes(data, file_size=13000, offset_span=35) is None
    assert OffsetIndex.from_bytes(data[:-1], file_size=13000, offset_span=40) is None
    assert OffsetIndex.from_bytes(data[8:] + data[:8], file_size=13000, offset_span=40) is None
    assert OffsetIndex.from_bytes(b"\x00" * 16, file_size=13000, offset_span=40) is None
    index.truncate_from(20)
    assert index.last() == (10, 4100)


def test_time_index_lookup_and_sanity() -> None:
    index = TimeIndex()
    index.maybe_append(100, 0)
    index.maybe_append(100, 5)  # not newer: ignored
    index.maybe_append(200, 7)
    assert len(index) == 2 and index.last_time_ms == 200
    assert index.floor_before(100) == 0
    assert index.floor_before(150) == 0
    assert index.floor_before(201) == 7
    data = index.to_bytes()
    assert TimeIndex.from_bytes(data, offset_span=8) is not None
    assert TimeIndex.from_bytes(data, offset_span=7) is None
    assert TimeIndex.from_bytes(data[12:] + data[:12], offset_span=8) is None
    index.truncate_from(7)
    assert index.last_time_ms == 100


def test_epoch_cache_persists_and_truncates(tmp_path: Path) -> None:
    path = tmp_path / "leader-epochs"
    cache = LeaderEpochCache(path)
    cache.assign(1, 0)
    cache.assign(2, 10)
    cache.assign(4, 20)
    loaded, ok = LeaderEpochCache.load(path)
    assert ok and list(loaded.entries) == [(1, 0), (2, 10), (4, 20)]
    assert loaded.epoch_for_offset(15) == 2 and loaded.epoch_for_offset(-1) is None
    assert loaded.truncate_from_start(12)
    assert list(loaded.entries) == [(2, 12), (4, 20)]
    assert loaded.truncate_from_end(20, keep_equal=True) is False
    assert loaded.truncate_from_end(20)
    assert LeaderEpochCache.load(path)[0].entries == ((2, 12),)
    path.write_bytes(b"garbage")
    assert LeaderEpochCache.load(path)[1] is False


def test_layout_names(tmp_path: Path) -> None:
    assert segment_path(tmp_path, 42).name == "00000000000000000042.log"
    assert parse_segment_name("00000000000000000042.log") == 42
    assert parse_segment_name("00000000000000000042.index") is None
    assert parse_segment_name("42.log") is None
    for base in (100, 7):
        segment_path(tmp_path, base).touch()
    (tmp_path / "junk.log").touch()
    assert list_segment_bases(tmp_path) == [7, 100]


def test_batch_walk_windows_and_errors() -> None:
    batches = [build_batch([(None, bytes([i]) * (50 * i + 1))], base_offset=i) for i in range(20)]
    data = b"".join(batches)
    reads = []

    def pread(size: int, position: int) -> bytes:
        reads.append(size)
        return data[position : position + size]

    walked = list(BatchWalk(pread, 0, len(data), verify=True, window_bytes=256))
    assert [h.base_offset for _, h in walked] == list(range(20))
    assert len(reads) < 20 * 2
    bad = bytearray(data)
    bad[-5] ^= 1
    walk = BatchWalk(lambda s, p: bytes(bad[p : p + s]), 0, len(bad), verify=True)
    with pytest.raises(CorruptBatch):
        list(walk)
    assert walk.position == len(data) - len(batches[-1])
    torn = BatchWalk(lambda s, p: data[p : p + s], 0, len(data) - 3, verify=False)
    with pytest.raises(CorruptBatch):
        list(torn)


def test_retention_count_rules(tmp_path: Path) -> None:
    segments = []
    for i, (size, max_time) in enumerate([(100, 10), (100, 20), (100, 30), (50, 40)]):
        seg = Segment(tmp_path, i * 10)
        seg.note_batch(0, i * 10, i * 10 + 10, size=size, time_ms=max_time, interval_bytes=4096)
        segments.append(seg)
    by_time = LogConfig(retention_ms=15, retention_bytes=None)
    assert retention_count(segments, by_time, now_ms=36, high_watermark=100) == 2
    assert retention_count(segments, by_time, now_ms=36, high_watermark=15) == 1
    assert retention_count(segments, by_time, now_ms=1000, high_watermark=100) == 3  # not active
    by_size = LogConfig(retention_ms=None, retention_bytes=160)
    assert retention_count(segments, by_size, now_ms=0, high_watermark=100) == 2
    assert retention_count(segments, by_size, now_ms=0, high_watermark=9) == 0
