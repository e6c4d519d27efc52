"""The page-cache window: what a flush evicts, and that evicted data still reads back."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from storage import flush
from storage.log import TabletLog
from storage.segments import DROP_STEP_BYTES
from tests.storage.conftest import make_batch, read_all, small_config, values_of

MiB = 1024 * 1024


@pytest.fixture
def drops(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int, int]]:
    """Every eviction as (file name, position, length), still performed for real."""
    seen: list[tuple[str, int, int]] = []
    real = flush.drop_cached

    def record(fd: int, position: int, length: int) -> None:
        seen.append((os.path.basename(os.readlink(f"/proc/self/fd/{fd}")), position, length))
        real(fd, position, length)

    monkeypatch.setattr(flush, "drop_cached", record)
    return seen


def test_flush_evicts_the_active_segment_below_the_window(
    tmp_path: Path, drops: list[tuple[str, int, int]]
) -> None:
    window = 2 * MiB
    log = TabletLog.open(
        tmp_path,
        small_config(segment_bytes=64 * MiB, fsync="always", page_cache_window_bytes=window),
    )
    batch = make_batch(count=64, value_size=16 * 1024)  # ~1 MiB
    for _ in range(2):
        log.append_as_leader(batch, leader_epoch=0)
    log.flush()
    assert drops == []  # everything is inside the window
    for _ in range(3):
        log.append_as_leader(batch, leader_epoch=0)
    size = log.size_bytes
    log.flush()
    assert len(drops) == 1
    name, position, length = drops[0]
    assert name.endswith(".log") and position == 0
    assert length == size - window >= DROP_STEP_BYTES
    log.append_as_leader(batch, leader_epoch=0)
    log.flush()
    assert drops[1][1] == length  # the next eviction starts where the last one ended
    assert len(values_of(read_all(log))) == 6 * 64  # evicted bytes read back from disk
    log.close()


def test_a_rolled_segment_is_evicted_whole(
    tmp_path: Path, drops: list[tuple[str, int, int]]
) -> None:
    log = TabletLog.open(
        tmp_path,
        small_config(segment_bytes=1 * MiB, fsync="always", page_cache_window_bytes=64 * MiB),
    )
    batch = make_batch(count=8, value_size=64 * 1024)  # just over 512 KiB: one per segment
    for _ in range(3):
        log.append_as_leader(batch, leader_epoch=0)
    log.flush()
    *rolled, _active = sorted(tmp_path.glob("*.log"))
    assert len(rolled) == 2
    # rolled segments go whole, the active one stays (inside the window)
    assert drops == [(f.name, 0, f.stat().st_size) for f in rolled]
    assert len(values_of(read_all(log))) == 3 * 8
    log.close()


@pytest.mark.parametrize("config", [{"page_cache_window_bytes": None}, {"fsync": "never"}])
def test_no_eviction_when_off_or_never_synced(
    tmp_path: Path, drops: list[tuple[str, int, int]], config: dict[str, object]
) -> None:
    log = TabletLog.open(
        tmp_path,
        small_config(
            **{"segment_bytes": 1 * MiB, "fsync": "always", "page_cache_window_bytes": 0, **config}
        ),
    )
    batch = make_batch(count=8, value_size=64 * 1024)
    for _ in range(5):
        log.append_as_leader(batch, leader_epoch=0)
    log.flush()
    log.close()
    assert drops == []
