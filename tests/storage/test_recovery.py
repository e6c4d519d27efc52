"""Recovery on open: each corruptor damages a log on disk; each test says what survives.

The log under test has several closed segments (1 KiB each, with index entries every 256 B) and
an active one; it is left either cleanly closed or as a killed process leaves it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from storage import layout
from storage.checkpoint import encode_checkpoint, write_checkpoint
from storage.errors import CorruptSegment
from storage.log import TabletLog
from tests.storage.conftest import FakeClock, crash, make_batch, read_all, small_config
from wire.batch import iter_headers

CONFIG = small_config(segment_bytes=1024, index_interval_bytes=128)


@dataclass
class Batch:
    base_offset: int
    end_offset: int
    segment: Path
    position: int
    size: int


@dataclass
class Built:
    directory: Path
    data: bytes  # every batch, as read back before damage
    batches: list[Batch]
    end_offset: int

    def segments(self) -> list[Path]:
        return sorted(self.directory.glob("*.log"))

    def batches_in(self, segment: Path) -> list[Batch]:
        return [b for b in self.batches if b.segment == segment]

    def data_before(self, offset: int) -> bytes:
        size = sum(b.size for b in self.batches if b.end_offset <= offset)
        return self.data[:size]


def build(tmp_path: Path, *, clean: bool, batches: int = 40) -> Built:
    directory = tmp_path / "log"
    log = TabletLog.open(directory, CONFIG, clock_ms=FakeClock())
    i = 0
    # At least ``batches``, and then until the active segment has a few index entries.
    while i < batches or max(directory.glob("*.log")).stat().st_size < 800:
        log.append_as_leader(make_batch(1 + i % 3, 40 + 7 * (i % 5), tag=i), 1 + i // 20)
        i += 1
    log.set_high_watermark(log.end_offset)
    data, end = read_all(log), log.end_offset
    if clean:
        log.close()
    else:
        log.checkpoint()
        crash(log)
    found = []
    for segment in sorted(directory.glob("*.log")):
        for position, h in iter_headers(segment.read_bytes()):
            found.append(Batch(h.base_offset, h.end_offset, segment, position, h.size))
    assert len({b.segment for b in found}) >= 4
    return Built(directory, data, found, end)


def reopen(built: Built, *, truncate_corrupt: bool = False, full_scan: bool = False) -> TabletLog:
    return TabletLog.open(
        built.directory,
        CONFIG,
        clock_ms=FakeClock(),
        truncate_corrupt=truncate_corrupt,
        full_scan=full_scan,
    )


def flip(path: Path, position: int) -> None:
    with path.open("r+b") as f:
        f.seek(position)
        byte = f.read(1)
        f.seek(position)
        f.write(bytes([byte[0] ^ 0x10]))


# -------------------------------------------------------------------- the active segment's tail


@pytest.mark.parametrize("clean", [True, False])
@pytest.mark.parametrize("cut", [1, 30, "header"])
def test_torn_tail_is_cut_at_the_last_whole_batch(
    tmp_path: Path, clean: bool, cut: int | str
) -> None:
    built = build(tmp_path, clean=clean)
    last = built.batches[-1]
    keep = last.position + (40 if cut == "header" else last.size - int(cut))
    os.truncate(last.segment, keep)
    log = reopen(built)
    try:
        assert log.end_offset == last.base_offset
        assert read_all(log) == built.data_before(last.base_offset)
        assert log.stats.recovered_truncated_bytes == keep - last.position
        assert last.segment.stat().st_size == last.position
        assert log.high_watermark == last.base_offset  # the HW checkpoint was ahead: clamped
        log.append_as_leader(make_batch(), log.latest_epoch or 0)
        assert log.end_offset == last.base_offset + 3
    finally:
        log.close()


@pytest.mark.parametrize("where", ["crc_body", "header_crc", "length"])
def test_corrupt_last_batch_is_dropped(tmp_path: Path, where: str) -> None:
    built = build(tmp_path, clean=False)
    last = built.batches[-1]
    offset_in_batch = {"crc_body": last.size - 2, "header_crc": 20, "length": 9}[where]
    flip(last.segment, last.position + offset_in_batch)
    log = reopen(built)
    try:
        assert log.end_offset == last.base_offset
        assert read_all(log) == built.data_before(last.base_offset)
    finally:
        log.close()


def test_corruption_inside_the_active_segment_after_a_crash_cuts_from_there(
    tmp_path: Path,
) -> None:
    built = build(tmp_path, clean=False)
    active = built.batches_in(built.segments()[-1])
    assert len(active) >= 3
    victim = active[1]
    flip(victim.segment, victim.position + victim.size - 1)
    log = reopen(built)
    try:
        assert log.end_offset == victim.base_offset
        assert read_all(log) == built.data_before(victim.base_offset)
    finally:
        log.close()


def test_zero_filled_tail_is_cut(tmp_path: Path) -> None:
    built = build(tmp_path, clean=False)
    with built.segments()[-1].open("ab") as f:
        f.write(b"\x00" * 4096)
    log = reopen(built)
    try:
        assert log.end_offset == built.end_offset and read_all(log) == built.data
        assert log.stats.recovered_truncated_bytes == 4096
    finally:
        log.close()


# -------------------------------------------------------------------- closed segments


@pytest.mark.parametrize("clean", [True, False])
def test_corrupt_last_batch_of_a_closed_segment_is_reported(tmp_path: Path, clean: bool) -> None:
    built = build(tmp_path, clean=clean)
    second = built.segments()[1]
    victim = built.batches_in(second)[-1]
    flip(second, victim.position + victim.size - 1)
    with pytest.raises(CorruptSegment) as err:
        reopen(built)
    assert err.value.path == str(second) and err.value.position == victim.position
    log = reopen(built, truncate_corrupt=True)
    try:
        assert log.end_offset == victim.base_offset
        assert read_all(log) == built.data_before(victim.base_offset)
        assert [p.name for p in built.segments()] == [p.name for p in built.segments()[:2]]
        assert log.high_watermark == victim.base_offset
    finally:
        log.close()


def test_corruption_deep_in_a_closed_segment_is_caught_by_reads(tmp_path: Path) -> None:
    built = build(tmp_path, clean=True)
    second = built.segments()[1]
    victim = built.batches_in(second)[0]
    flip(second, victim.position + victim.size - 1)
    log = reopen(built)  # the cheap check does not read every batch...
    try:
        with pytest.raises(CorruptSegment):
            log.read(victim.base_offset, 1 << 20)  # ...but reads never serve it
        before = log.read(0, 1 << 20)
        assert before.read_bytes() == built.data_before(before.end_offset)
        after = built.batches_in(second)[1]
        assert log.read(after.base_offset, 10).first_offset == after.base_offset
    finally:
        log.close()
    with pytest.raises(CorruptSegment):
        reopen(built, full_scan=True)
    log = reopen(built, truncate_corrupt=True)
    try:
        assert log.end_offset == victim.base_offset
        assert read_all(log) == built.data_before(victim.base_offset)
    finally:
        log.close()


def test_closed_segment_missing_its_tail_is_reported(tmp_path: Path) -> None:
    built = build(tmp_path, clean=True)
    second = built.segments()[1]
    victim = built.batches_in(second)[-1]
    os.truncate(second, victim.position)
    with pytest.raises(CorruptSegment):
        reopen(built)
    log = reopen(built, truncate_corrupt=True)
    try:
        assert log.end_offset == victim.base_offset
    finally:
        log.close()


# -------------------------------------------------------------------- indexes


def _garble_index(path: Path, how: str) -> None:
    data = path.read_bytes()
    assert len(data) >= 16, "the test needs an index with entries"
    if how == "delete":
        path.unlink()
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "zeros":
        path.write_bytes(b"\x00" * len(data))
    elif how == "odd_size":
        path.write_bytes(data[:-3])
    elif how == "past_end":
        path.write_bytes(data[:-4] + b"\x7f\xff\xff\xff")
    elif how == "shifted":  # sane (monotonic, in the file) but every position is wrong
        entries = [data[i : i + 8] for i in range(0, len(data), 8)]
        shifted = [e[:4] + (int.from_bytes(e[4:], "big") + 1).to_bytes(4, "big") for e in entries]
        path.write_bytes(b"".join(shifted))
    elif how == "stale_middle":  # the last entry is right, a middle one points elsewhere
        first = int.from_bytes(data[4:8], "big") + 1
        path.write_bytes(data[:4] + first.to_bytes(4, "big") + data[8:])


@pytest.mark.parametrize(
    "how", ["delete", "empty", "zeros", "odd_size", "past_end", "shifted", "stale_middle"]
)
@pytest.mark.parametrize("segment", [0, -1])
def test_damaged_index_is_rebuilt_not_trusted(tmp_path: Path, how: str, segment: int) -> None:
    built = build(tmp_path, clean=True)
    target = built.segments()[segment]
    _garble_index(target.with_suffix(".index"), how)
    log = reopen(built)
    try:
        for b in built.batches:  # every offset still maps to its batch
            assert log.read(b.base_offset, 1).first_offset == b.base_offset
        assert read_all(log) == built.data
        assert log.stats.index_rebuilds >= 1
    finally:
        log.close()


@pytest.mark.parametrize("how", ["delete", "garble"])
def test_damaged_time_index_is_rebuilt(tmp_path: Path, how: str) -> None:
    built = build(tmp_path, clean=True)
    path = built.segments()[1].with_suffix(".timeindex")
    if how == "delete":
        path.unlink()
    else:
        path.write_bytes(b"\xff" * 12 + path.read_bytes())
    log = reopen(built)
    try:
        assert log.stats.index_rebuilds == 1
        assert read_all(log) == built.data
        assert log.offset_for_timestamp(0) == 0
    finally:
        log.close()


# -------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("content", [b"", b"garbage\n", "flipped"])
@pytest.mark.parametrize(
    "name",
    [
        layout.HIGH_WATERMARK_FILE,
        layout.LOG_START_OFFSET_FILE,
        layout.LEADER_EPOCHS_FILE,
        layout.PRODUCER_STATE_FILE,
        layout.CLEAN_SHUTDOWN_FILE,
    ],
)
def test_empty_or_garbled_checkpoint_is_not_fatal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, name: str, content: bytes | str
) -> None:
    built = build(tmp_path, clean=True)
    reference = reopen(built)
    expected = (reference.start_offset, reference.high_watermark, reference.leader_epochs)
    reference.close()
    path = built.directory / name
    data = path.read_bytes()
    if content == "flipped":
        content = data[:-12] + bytes([data[-12] ^ 1]) + data[-11:]
    assert isinstance(content, bytes)
    path.write_bytes(content)
    with caplog.at_level(logging.WARNING):
        log = reopen(built)
    try:
        assert "garbled" in caplog.text
        assert read_all(log) == built.data and log.end_offset == built.end_offset
        start, hw, epochs = expected
        assert log.start_offset == start and log.leader_epochs == epochs
        # A lost HW checkpoint restarts at the start offset (the leader re-advances it).
        assert log.high_watermark == (start if name == layout.HIGH_WATERMARK_FILE else hw)
    finally:
        log.close()


def test_epoch_cache_ahead_of_the_log_is_truncated(tmp_path: Path) -> None:
    built = build(tmp_path, clean=False)
    write_checkpoint(
        built.directory / layout.LEADER_EPOCHS_FILE,
        "leader-epochs",
        ["1 0", "2 30", f"3 {built.end_offset}", f"9 {built.end_offset + 50}"],
    )
    log = reopen(built)
    try:
        assert log.leader_epochs == ((1, 0), (2, 30), (3, built.end_offset))
    finally:
        log.close()


def test_epoch_cache_is_rebuilt_from_batches_when_missing(tmp_path: Path) -> None:
    built = build(tmp_path, clean=True)
    reference = reopen(built)
    epochs = reference.leader_epochs
    reference.close()
    assert len(epochs) >= 2
    (built.directory / layout.LEADER_EPOCHS_FILE).unlink()
    log = reopen(built)
    try:
        assert log.leader_epochs == epochs
    finally:
        log.close()


def test_interrupted_retention_and_leftovers_are_finished(tmp_path: Path) -> None:
    built = build(tmp_path, clean=True)
    segments = built.segments()
    new_start = int(segments[2].stem)
    write_checkpoint(
        built.directory / layout.LOG_START_OFFSET_FILE, "log-start-offset", [str(new_start)]
    )
    (built.directory / "00000000000000000000.log.deleted").write_bytes(b"x")
    (built.directory / "leader-epochs.tmp").write_bytes(b"x")
    (built.directory / "00000000000000099999.index").write_bytes(b"")
    log = reopen(built)
    try:
        assert log.start_offset == new_start
        assert log.segment_bases[0] == new_start
        assert read_all(log) == built.data[len(built.data_before(new_start)) :]
        names = {p.name for p in built.directory.iterdir()}
        assert not {n for n in names if n.endswith((".deleted", ".tmp"))}
        assert "00000000000000099999.index" not in names
        assert segments[0].name not in names and segments[1].name not in names
    finally:
        log.close()


def test_clean_marker_is_removed_on_open(tmp_path: Path) -> None:
    built = build(tmp_path, clean=True)
    marker = built.directory / layout.CLEAN_SHUTDOWN_FILE
    assert marker.exists()
    log = reopen(built)
    assert not marker.exists()
    log.close()
    assert marker.read_bytes() == encode_checkpoint(
        "clean-shutdown",
        [f"{built.end_offset} {log.segment_bases[-1]} {built.segments()[-1].stat().st_size}"],
    )


def test_every_segment_below_the_start_offset_empties_the_log(tmp_path: Path) -> None:
    built = build(tmp_path, clean=True)
    write_checkpoint(
        built.directory / layout.LOG_START_OFFSET_FILE,
        "log-start-offset",
        [str(built.end_offset + 100)],
    )
    log = reopen(built)
    try:
        assert (log.start_offset, log.end_offset) == (built.end_offset + 100,) * 2
        assert log.segment_bases == [built.end_offset + 100]
    finally:
        log.close()
