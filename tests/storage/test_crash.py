"""Crash test: a writer process appending with ``fsync: always`` is SIGKILLed mid-stream; after
reopening, every append it had acknowledged is readable at its offsets, byte for byte.

SIGKILL loses the process, not the page cache, so this checks that acknowledgement follows the
write, that recovery keeps every whole batch and cuts a torn one, and that offsets stay dense
across restarts; power loss is what the fsync seam tests in test_group_commit.py are about.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from storage.log import TabletLog
from tests.storage.conftest import read_all
from tests.storage.crash_writer import CONFIG, producer_digest
from wire.batch import iter_headers

ROOT = Path(__file__).resolve().parents[2]


def run_and_kill(directory: Path, seed: int, acks_before_kill: int) -> list[tuple[int, int, str]]:
    """Run the writer until it has acknowledged ``acks_before_kill`` appends, SIGKILL it and
    return every acknowledgement it printed."""
    writer = subprocess.Popen(
        [sys.executable, "-m", "tests.storage.crash_writer", str(directory), str(seed)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 30
    try:
        while len(lines) < acks_before_kill:
            line = writer.stdout.readline()
            assert line, f"writer exited early: {writer.stderr.read() if writer.stderr else ''}"
            lines.append(line)
            assert time.monotonic() < deadline, "writer too slow"
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        rest, _err = writer.communicate(timeout=10)
    assert writer.returncode == -signal.SIGKILL
    acked = []
    for line in lines + rest.splitlines(keepends=True):
        if line.endswith("\n"):  # a line cut by the kill was never a complete acknowledgement
            base, end, digest = line.split()
            acked.append((int(base), int(end), digest))
    return acked


def check_acknowledged(directory: Path, acked: list[tuple[int, int, str]]) -> int:
    log = TabletLog.open(directory, CONFIG)
    try:
        data = read_all(log)
        stored = {h.base_offset: (h.end_offset, pos, h.size) for pos, h in iter_headers(data)}
        for base, end, digest in acked:
            assert base in stored, f"acknowledged append at {base} is missing"
            stored_end, pos, size = stored[base]
            assert stored_end == end
            assert producer_digest(data[pos : pos + size]) == digest  # byte for byte
        expected = 0
        for _pos, h in iter_headers(data):  # dense offsets from 0: no gap, no overlap
            assert h.base_offset == expected
            expected = h.end_offset
        assert expected == log.end_offset
        return log.end_offset
    finally:
        log.close()


def test_acknowledged_appends_survive_sigkill(tmp_path: Path) -> None:
    directory = tmp_path / "log"
    acked = run_and_kill(directory, seed=1, acks_before_kill=150)
    assert len(acked) >= 150
    end = check_acknowledged(directory, acked)
    assert end >= max(e for _, e, _ in acked)
    # A second life on the recovered log, killed again: everything from both lives survives.
    acked += run_and_kill(directory, seed=2, acks_before_kill=150)
    assert len({b for b, _, _ in acked}) == len(acked)  # offsets never reused
    check_acknowledged(directory, acked)
    assert len(list(directory.glob("*.log"))) > 2  # the stream crossed segment rolls
