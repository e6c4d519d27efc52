"""LogCheckpoints: the checkpoint files of one log that TabletLog writes as it runs.

Files (checkpoint.py format; names in layout.py):

* ``high-watermark``, kind ``high-watermark``: one line, the high watermark (exclusive).
* ``log-start-offset``, kind ``log-start-offset``: one line, the first readable offset. It is
  written *before* segments below it are deleted, so a crash in between leaves segments that
  recovery deletes.
* ``producer-state``, kind ``producer-state`` (lines defined in producers.py): the idempotent
  producers as of an end offset; written (not fsynced) on every roll and (fsynced) on close,
  removed when a truncation cuts below the offset it describes.
* ``clean-shutdown``, kind ``clean-shutdown``: one line ``<end_offset> <active base> <active
  size>``, written last by a clean close; recovery trusts the active segment only if it matches.

The leader-epoch checkpoint is written by epochs.py. The values are written only when they
changed since they were last written or read (what recovery found on disk).

Not thread-safe: owned by one TabletLog on the event-loop thread.
"""

from __future__ import annotations

from pathlib import Path

from storage import layout
from storage.checkpoint import read_checkpoint, remove_file, write_checkpoint
from storage.producers import KIND as PRODUCER_KIND
from storage.producers import ProducerStateManager
from storage.segment import Segment

START_KIND = "log-start-offset"
HW_KIND = "high-watermark"
CLEAN_KIND = "clean-shutdown"


class LogCheckpoints:
    """What of a log's offsets and producer state is on disk, and the writes that update it."""

    def __init__(
        self,
        directory: Path,
        *,
        saved_start_offset: int | None,
        saved_high_watermark: int | None,
        producer_snapshot_offset: int | None,
    ) -> None:
        self._directory = directory
        self._saved_start = saved_start_offset
        self._saved_hw = saved_high_watermark
        self._snapshot_offset = producer_snapshot_offset

    def save(self, high_watermark: int, start_offset: int) -> None:
        """Write the high watermark and start offset if they changed (atomic, fsynced)."""
        if high_watermark != self._saved_hw:
            path = self._directory / layout.HIGH_WATERMARK_FILE
            write_checkpoint(path, HW_KIND, [str(high_watermark)])
            self._saved_hw = high_watermark
        self.save_start(start_offset)

    def save_start(self, start_offset: int) -> None:
        """Write the start offset if it changed (atomic, fsynced). Raises OSError."""
        if start_offset != self._saved_start:
            path = self._directory / layout.LOG_START_OFFSET_FILE
            write_checkpoint(path, START_KIND, [str(start_offset)])
            self._saved_start = start_offset

    def save_producers(
        self, producers: ProducerStateManager, end_offset: int, *, sync: bool = True
    ) -> None:
        """Expire idle producers, then write the state as of ``end_offset`` (fsynced only with
        ``sync``)."""
        producers.expire_idle()
        path = self._directory / layout.PRODUCER_STATE_FILE
        write_checkpoint(path, PRODUCER_KIND, producers.snapshot_lines(end_offset), sync=sync)
        self._snapshot_offset = end_offset

    def forget_producers(self) -> None:
        """The producer snapshot describes data that is gone (the next truncation removes it)."""
        self._snapshot_offset = None

    def drop_producers_beyond(self, end_offset: int) -> None:
        """Remove the producer snapshot unless it is as of an offset at or below ``end_offset``
        (after a truncation to ``end_offset``: replaying from a later offset would be wrong)."""
        if self._snapshot_offset is None or self._snapshot_offset > end_offset:
            remove_file(self._directory / layout.PRODUCER_STATE_FILE)
            self._snapshot_offset = None

    def mark_clean(self, active: Segment) -> None:
        """Write the clean-shutdown marker for ``active``, the last segment (fsynced)."""
        path = self._directory / layout.CLEAN_SHUTDOWN_FILE
        line = f"{active.end_offset} {active.base_offset} {active.size}"
        write_checkpoint(path, CLEAN_KIND, [line])


def read_clean_marker(directory: Path) -> tuple[int, int, int] | None:
    """(end offset, active base offset, active size) of the clean-shutdown marker, or None."""
    lines = read_checkpoint(directory / layout.CLEAN_SHUTDOWN_FILE, CLEAN_KIND)
    if lines is None or len(lines) != 1:
        return None
    fields = lines[0].split()
    if len(fields) != 3 or not all(f.isdigit() for f in fields):
        return None
    end, base, size = (int(f) for f in fields)
    return end, base, size
