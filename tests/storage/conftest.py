"""Fixtures for the storage tests: configs, batches, logs in tmp directories, a fake clock."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from storage.config import LogConfig
from storage.log import TabletLog
from wire.batch import build_batch, iter_records

SMALL = {"segment_bytes": 4096, "index_interval_bytes": 256, "fsync": "never"}


@dataclass
class FakeClock:
    """A settable millisecond clock (the ``clock_ms`` seam of TabletLog)."""

    now_ms: int = 1_700_000_000_000
    calls: int = field(default=0)

    def __call__(self) -> int:
        self.calls += 1
        return self.now_ms

    def advance(self, ms: int) -> None:
        self.now_ms += ms


def small_config(**overrides: Any) -> LogConfig:
    """Small segments and a dense index so tests exercise rolls and index lookups."""
    return LogConfig(**{**SMALL, **overrides})


def make_batch(count: int = 3, value_size: int = 20, *, tag: int = 0, **kwargs: Any) -> bytes:
    """A producer batch of ``count`` records whose values identify (tag, index)."""
    records = [
        (f"k{tag}-{i}".encode(), (f"v{tag}-{i}-".encode() * value_size)[:value_size])
        for i in range(count)
    ]
    return build_batch(records, **kwargs)


def values_of(data: bytes) -> list[tuple[int, bytes | None]]:
    """(offset, value) of every record in whole batches."""
    return [(r.offset, r.value) for r in iter_records(data)]


def read_all(log: TabletLog, start: int | None = None, max_offset: int | None = None) -> bytes:
    """Every batch from ``start`` (default start_offset) to the end, through repeated reads."""
    offset = log.start_offset if start is None else start
    out = bytearray()
    while True:
        result = log.read(offset, 1 << 20, max_offset)
        if result.is_empty:
            return bytes(out)
        out += result.read_bytes()
        offset = result.end_offset


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def open_log(tmp_path: Path, clock: FakeClock) -> Iterator[Callable[..., TabletLog]]:
    """``open_log(**config_overrides)``: open (or reopen) the log in ``tmp_path/log``."""
    opened: list[TabletLog] = []

    def _open(
        *, truncate_corrupt: bool = False, full_scan: bool = False, **overrides: Any
    ) -> TabletLog:
        log = TabletLog.open(
            tmp_path / "log",
            small_config(**overrides),
            clock_ms=clock,
            truncate_corrupt=truncate_corrupt,
            full_scan=full_scan,
        )
        opened.append(log)
        return log

    yield _open
    for log in opened:
        if not log.is_closed:
            log.close()


def crash(log: TabletLog) -> None:
    """Drop the log as a killed process would: fds closed, no flush, no marker, no checkpoint."""
    log._release()
