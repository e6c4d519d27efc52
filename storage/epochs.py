"""Leader-epoch cache: for each leader epoch, the first offset written in it (KIP-101/279).

A replica that becomes a follower asks the new leader for the end offset of its own latest
epoch and truncates anything beyond it; this cache answers that question on the leader.

Checkpoint ``leader-epochs`` (checkpoint.py format, kind ``leader-epochs``): one line per entry,
``<epoch> <start_offset>``, epochs strictly increasing, start offsets non-decreasing. It is
rewritten (atomically, fsynced) whenever an entry is added or removed, which happens once per
leadership change, not per append.

Not thread-safe: owned by one log on the event-loop thread.
"""

from __future__ import annotations

import logging
from bisect import bisect_right
from collections.abc import Sequence
from pathlib import Path

from storage.checkpoint import read_checkpoint, write_checkpoint
from storage.errors import StaleLeaderEpoch

log = logging.getLogger(__name__)

KIND = "leader-epochs"
UNDEFINED = (-1, -1)


class LeaderEpochCache:
    """Ordered (epoch, start_offset) entries, persisted to ``path`` on every change."""

    def __init__(self, path: Path, entries: list[tuple[int, int]] | None = None) -> None:
        self.path = path
        self._entries: list[tuple[int, int]] = list(entries or [])

    @classmethod
    def load(cls, path: Path) -> tuple[LeaderEpochCache, bool]:
        """Read the checkpoint; return (cache, whether it was read successfully)."""
        lines = read_checkpoint(path, KIND)
        entries = _parse(lines) if lines is not None else None
        if lines is not None and entries is None:
            log.warning("leader-epoch checkpoint %s has invalid entries; ignoring it", path)
        return cls(path, entries), entries is not None

    @property
    def entries(self) -> tuple[tuple[int, int], ...]:
        """The (epoch, start_offset) entries, oldest first."""
        return tuple(self._entries)

    @property
    def latest_epoch(self) -> int | None:
        """The newest epoch, or None when the cache is empty."""
        return self._entries[-1][0] if self._entries else None

    def reject_stale(self, epoch: int) -> None:
        """Raise StaleLeaderEpoch if ``epoch`` is older than the latest epoch."""
        latest = self.latest_epoch
        if latest is not None and epoch < latest:
            raise StaleLeaderEpoch(epoch, latest)

    def assign(self, epoch: int, start_offset: int, *, persist: bool = True) -> bool:
        """Record that ``epoch`` starts at ``start_offset``; return whether anything changed.

        Idempotent for the latest epoch. An epoch older than the latest is ignored (logged).
        A newer epoch first removes entries starting at or after ``start_offset`` (epochs that
        never got a batch), as Kafka does.
        """
        assert epoch >= 0 and start_offset >= 0
        latest = self.latest_epoch
        if latest is not None and epoch <= latest:
            if epoch < latest:
                log.warning("%s: ignoring epoch %d older than %d", self.path, epoch, latest)
            return False
        while self._entries and self._entries[-1][1] >= start_offset:
            self._entries.pop()
        self._entries.append((epoch, start_offset))
        if persist:
            self.persist()
        return True

    def end_offset_for(self, epoch: int, log_end_offset: int) -> tuple[int, int]:
        """(largest known epoch <= ``epoch``, exclusive end offset of that epoch): see
        :func:`epoch_end_offset`."""
        return epoch_end_offset(self._entries, epoch, log_end_offset)

    def epoch_for_offset(self, offset: int) -> int | None:
        """Epoch of the batch holding ``offset`` as far as the cache knows, or None."""
        found = None
        for epoch, start in self._entries:
            if start > offset:
                break
            found = epoch
        return found

    def truncate_from_end(self, end_offset: int, *, keep_equal: bool = False) -> bool:
        """Drop entries starting at or after ``end_offset`` (only after, with ``keep_equal``).

        ``truncate_to`` drops those at the new end; recovery keeps an epoch assigned at the end
        with no batch yet. Returns whether anything changed (and persists then).
        """
        before = len(self._entries)
        while self._entries and (
            self._entries[-1][1] > end_offset
            or (not keep_equal and self._entries[-1][1] == end_offset)
        ):
            self._entries.pop()
        return self._persist_if(before != len(self._entries))

    def truncate_from_start(self, start_offset: int) -> bool:
        """Forget offsets below ``start_offset``: the entry covering it now starts there."""
        i = bisect_right([s for _, s in self._entries], start_offset)
        if i == 0:
            return False
        epoch, start = self._entries[i - 1]
        if i == 1 and start == start_offset:
            return False
        self._entries[:i] = [(epoch, start_offset)]
        return self._persist_if(True)

    def clear(self) -> None:
        """Remove every entry (the log was emptied) and persist."""
        self._entries.clear()
        self.persist()

    def persist(self) -> None:
        """Write the checkpoint (atomic, fsynced). Raises OSError."""
        write_checkpoint(self.path, KIND, [f"{e} {s}" for e, s in self._entries])

    def _persist_if(self, changed: bool) -> bool:
        if changed:
            self.persist()
        return changed


def epoch_end_offset(
    entries: Sequence[tuple[int, int]], epoch: int, log_end_offset: int
) -> tuple[int, int]:
    """(largest epoch <= ``epoch`` in ``entries``, exclusive end offset of that epoch).

    ``entries`` are (epoch, start_offset) pairs, oldest first (:attr:`LeaderEpochCache.entries`).
    The end of an epoch is the start of the next one, or ``log_end_offset`` for the latest;
    (-1, -1) when ``epoch`` is below every entry or there is none. Pure: the leader answers a
    follower's epoch query with it, and a follower finds its own end of the leader's epoch.
    """
    i = bisect_right(entries, (epoch, 1 << 63))
    if i == 0:
        return UNDEFINED
    found = entries[i - 1][0]
    end = entries[i][1] if i < len(entries) else log_end_offset
    return found, end


def _parse(lines: list[str]) -> list[tuple[int, int]] | None:
    entries: list[tuple[int, int]] = []
    for line in lines:
        fields = line.split()
        if len(fields) != 2 or not all(f.isdigit() for f in fields):
            return None
        epoch, start = int(fields[0]), int(fields[1])
        if entries and (epoch <= entries[-1][0] or start < entries[-1][1]):
            return None
        entries.append((epoch, start))
    return entries
