"""The files of one tablet log directory, their names, and what each one holds.

A tablet replica's log lives in one directory (``<data_dir>/<log>/tablet-<i>/``)::

    00000000000000000000.log        segment: whole record batches back to back (batch.py format),
                                    offsets [base, next segment's base); name = base offset
    00000000000000000000.index      sparse offset index of that segment (index.py), rebuildable
    00000000000000000000.timeindex  sparse time index of that segment (index.py), rebuildable
    00000000000000001000.log        ... the last segment is the active one, the only one written
    high-watermark                  checkpoint: the high watermark (exclusive)
    log-start-offset                checkpoint: the first readable offset
    leader-epochs                   checkpoint: leader epoch -> start offset, one line each
    producer-state                  checkpoint: idempotent producers' last batches, as of an offset
    clean-shutdown                  checkpoint: present only while the log is closed cleanly
    *.deleted                       a file being deleted (retention, truncation); removed on open
    *.tmp                           a checkpoint being written; removed on open

Checkpoint files have the format of checkpoint.py (a version line, the values, a checksum) and
are replaced atomically. Index files are never trusted: they are sanity-checked on open and
rebuilt from the segment when they fail (or are missing); see recovery.py.

This module is pure and thread-safe.
"""

from __future__ import annotations

import re
from pathlib import Path

LOG_SUFFIX = ".log"
INDEX_SUFFIX = ".index"
TIME_INDEX_SUFFIX = ".timeindex"
SEGMENT_SUFFIXES = (LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX)
DELETED_SUFFIX = ".deleted"
TMP_SUFFIX = ".tmp"

HIGH_WATERMARK_FILE = "high-watermark"
LOG_START_OFFSET_FILE = "log-start-offset"
LEADER_EPOCHS_FILE = "leader-epochs"
PRODUCER_STATE_FILE = "producer-state"
CLEAN_SHUTDOWN_FILE = "clean-shutdown"

_SEGMENT_NAME = re.compile(r"^(\d{20})\.log$")


def segment_path(directory: Path, base_offset: int, suffix: str = LOG_SUFFIX) -> Path:
    """Path of the segment file (or its index files) whose first offset is ``base_offset``."""
    assert base_offset >= 0
    return directory / f"{base_offset:020d}{suffix}"


def segment_files(directory: Path, base_offset: int) -> list[Path]:
    """The ``.log``, ``.index`` and ``.timeindex`` paths of one segment."""
    return [segment_path(directory, base_offset, suffix) for suffix in SEGMENT_SUFFIXES]


def parse_segment_name(name: str) -> int | None:
    """Base offset encoded in a ``.log`` file name, or None if ``name`` is not a segment."""
    match = _SEGMENT_NAME.match(name)
    return int(match.group(1)) if match else None


def list_segment_bases(directory: Path) -> list[int]:
    """Base offsets of the ``.log`` files in ``directory``, ascending."""
    bases = []
    for entry in directory.iterdir():
        base = parse_segment_name(entry.name)
        if base is not None:
            bases.append(base)
    return sorted(bases)
