"""Flush tickets: the part of a log flush that may run on another thread.

Protocol (see TabletLog.begin_flush): the event-loop thread calls ``log.begin_flush()``, which
captures the end offset written so far and *duplicates* every fd that needs an fsync (the active
segment, segments rolled since the last flush, their index files, the directory after a file was
created). Any thread then calls ``ticket.run()``, which fsyncs and closes those duplicates, while
the loop thread keeps appending, rolling or even closing the log: a roll or close never closes an
fd the ticket uses, because the ticket owns its own. Finally the loop thread calls
``log.complete_flush(ticket)``, which advances ``flushed_offset``.

A ticket may also carry *cache drops* (fd, position, length) on files it syncs: once every fsync
succeeded those pages are clean, and ``run`` evicts them from the page cache (see
``LogConfig.page_cache_window_bytes``).

``sync_data`` and ``sync_metadata`` are module attributes on purpose: tests replace them to count
or to hold fsyncs (a seam, not a timing assumption).
"""

from __future__ import annotations

import os
from collections.abc import Callable

sync_data: Callable[[int], None] = os.fdatasync
"""fsync of a regular file's data (and the metadata needed to read it back, such as its size)."""

sync_metadata: Callable[[int], None] = os.fsync
"""fsync of a directory (new, renamed or deleted entries)."""


CacheDrop = tuple[int, int, int]
"""(fd, position, length): clean pages of a synced file to evict from the page cache."""


def drop_cached(fd: int, position: int, length: int) -> None:
    """Evict ``[position, position + length)`` of ``fd`` from the page cache; best effort (a
    file system without fadvise support loses nothing but the optimisation)."""
    try:
        os.posix_fadvise(fd, position, length, os.POSIX_FADV_DONTNEED)
    except OSError:
        pass


class FlushTicket:
    """One fsync round for one log: covers every offset below ``end_offset`` when run.

    ``run`` may be called from any thread, once; the other methods and fields belong to the log's
    thread. ``generation`` lets the log ignore a ticket taken before a truncation.
    """

    __slots__ = (
        "_dir_fds",
        "_drops",
        "_file_fds",
        "end_offset",
        "fsync_count",
        "generation",
        "ran",
        "succeeded",
    )

    def __init__(
        self,
        end_offset: int,
        generation: int,
        file_fds: list[int],
        dir_fds: list[int],
        drops: list[CacheDrop] | None = None,
    ) -> None:
        self.end_offset = end_offset
        self.generation = generation
        self._file_fds = file_fds
        self._dir_fds = dir_fds
        self._drops = drops or []
        assert all(fd in file_fds for fd, _, _ in self._drops), "drops only on synced files"
        self.fsync_count = len(file_fds) + len(dir_fds)
        self.ran = False
        self.succeeded = False

    def __repr__(self) -> str:
        return f"FlushTicket(end_offset={self.end_offset}, fds={len(self._file_fds)})"

    def run(self) -> None:
        """fsync every captured fd, then close them all. Thread-safe; call once.

        Raises OSError if an fsync fails: the data is then not known to be durable, and after a
        failed fsync Linux may have dropped the dirty pages, so the log should be closed and
        recovered (the error is reported to every waiter).
        """
        assert not self.ran, "a flush ticket runs once"
        self.ran = True
        try:
            for fd in self._file_fds:
                sync_data(fd)
            for fd in self._dir_fds:
                sync_metadata(fd)
            self.succeeded = True
            for fd, position, length in self._drops:
                drop_cached(fd, position, length)
        finally:
            self.release()

    def release(self) -> None:
        """Close the captured fds without syncing (a ticket that will never run)."""
        for fd in (*self._file_fds, *self._dir_fds):
            os.close(fd)
        self._file_fds = []
        self._dir_fds = []
        self._drops = []
