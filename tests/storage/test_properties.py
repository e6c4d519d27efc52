"""Property test: any sequence of appends, rolls, truncations, retention runs, start-offset moves
and reopens (clean or after a crash) reads back exactly what was appended and not removed.

The model is a plain list of batches (base offset, record values) plus a start offset.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from storage.config import LogConfig
from storage.log import TabletLog
from tests.storage.conftest import FakeClock, crash
from wire.batch import build_batch, iter_records

CONFIG = LogConfig(
    segment_bytes=2048,
    index_interval_bytes=200,
    fsync="never",
    retention_bytes=6000,
    retention_ms=None,
    segment_ms=None,
)


class LogMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="tabletlog-prop-"))
        self.clock = FakeClock()
        self.log = TabletLog.open(self.root / "log", CONFIG, clock_ms=self.clock)
        self.batches: list[tuple[int, list[bytes]]] = []  # (base offset, values)
        self.times: dict[int, int] = {}  # base offset -> append time
        self.start = 0
        self.counter = 0

    def teardown(self) -> None:
        if not self.log.is_closed:
            self.log.close()
        shutil.rmtree(self.root, ignore_errors=True)

    @property
    def end(self) -> int:
        if not self.batches:
            return self.start
        base, values = self.batches[-1]
        return base + len(values)

    # ------------------------------------------------------------------ operations

    @rule(shape=st.lists(st.tuples(st.integers(1, 4), st.integers(0, 700)), min_size=1, max_size=3))
    def append(self, shape: list[tuple[int, int]]) -> None:
        request = b""
        offset = self.end
        for count, size in shape:
            values = []
            for _ in range(count):
                self.counter += 1
                values.append((b"%d," % self.counter * size)[:size])
            request += build_batch([(None, v) for v in values])
            self.batches.append((offset, values))
            self.times[offset] = self.clock.now_ms
            offset += count
        result = self.log.append_as_leader(request, 0)
        assert result.end_offset == self.end and result.append_time_ms == self.clock.now_ms
        self.clock.advance(1)

    @rule()
    def roll(self) -> None:
        self.log.roll()

    @precondition(lambda self: self.end > self.start)
    @rule(fraction=st.floats(0, 1))
    def truncate(self, fraction: float) -> None:
        offset = self.start + int((self.end - self.start) * fraction)
        self.log.truncate_to(offset)
        if offset >= self.end:
            return
        boundary = max((b for b, _ in self.batches if b <= offset), default=self.start)
        if boundary < self.start:  # the start offset fell inside the batch: nothing is left
            self.batches = []
        else:
            self.batches = [(b, v) for b, v in self.batches if b < boundary]
        assert self.log.end_offset == self.end

    @rule(committed=st.floats(0, 1))
    def retention(self, committed: float) -> None:
        self.log.set_high_watermark(self.start + int((self.end - self.start) * committed))
        before = self.log.start_offset
        self.log.apply_retention()
        assert self.log.start_offset >= before
        self._forget_below(self.log.start_offset)

    @precondition(lambda self: self.end > self.start)
    @rule(fraction=st.floats(0, 1))
    def advance_start(self, fraction: float) -> None:
        offset = self.start + int((self.end - self.start) * fraction)
        self.log.advance_start_offset(offset)
        self._forget_below(offset)

    @rule(crashed=st.booleans())
    def reopen(self, crashed: bool) -> None:
        if crashed:
            crash(self.log)
        else:
            self.log.close()
        self.log = TabletLog.open(self.root / "log", CONFIG, clock_ms=self.clock)

    def _forget_below(self, offset: int) -> None:
        self.start = max(self.start, offset)
        self.batches = [(b, v) for b, v in self.batches if b + len(v) > self.start]

    # ------------------------------------------------------------------ invariants

    @invariant()
    def offsets_agree(self) -> None:
        log = self.log
        assert (log.start_offset, log.end_offset) == (self.start, self.end)
        assert log.start_offset <= log.high_watermark <= log.end_offset

    @invariant()
    def lookup_by_time_agrees(self) -> None:
        for base, _values in self.batches[:: max(1, len(self.batches) // 3)]:
            time_ms = self.times[base]
            expected = min(b for b, _ in self.batches if self.times[b] >= time_ms)
            assert self.log.offset_for_timestamp(time_ms) == max(expected, self.start)
        assert self.log.offset_for_timestamp(self.clock.now_ms + 1) is None

    @invariant()
    def reads_back_what_was_appended(self) -> None:
        expected = [
            (b + i, v)
            for b, values in self.batches
            for i, v in enumerate(values)
            if b + i >= self.start
        ]
        got = []
        offset = self.start
        while True:
            result = self.log.read(offset, 3000)
            if result.is_empty:
                break
            assert result.first_offset <= offset < result.end_offset
            got += [
                (r.offset, r.value)
                for r in iter_records(result.read_bytes())
                if r.offset >= self.start
            ]
            offset = result.end_offset
        assert got == expected

    @invariant()
    def memory_and_disk_reads_agree(self) -> None:
        """The tail cache answers exactly what the file holds, batch for batch."""
        log = self.log
        for offset in range(log.start_offset, log.end_offset, 3):
            for max_bytes, max_offset in ((0, None), (900, None), (3000, log.end_offset - 1)):
                cached = log.read(offset, max_bytes, max_offset)
                disk = log.read(offset, max_bytes, max_offset, from_disk=True)
                assert (cached.first_offset, cached.end_offset, cached.position, cached.size) == (
                    disk.first_offset,
                    disk.end_offset,
                    disk.position,
                    disk.size,
                )
                assert cached.read_bytes() == disk.read_bytes()


TestLogMachine = LogMachine.TestCase
TestLogMachine.settings = settings(
    max_examples=40,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
