"""File descriptors: a bounded cache of read fds shared by every log of a node, and I/O helpers.

A node may host thousands of tablets, each with many closed segments; keeping an fd open per
segment would exhaust the process's fd limit. Instead a log keeps exactly one fd permanently, the
active segment's write fd (registered here so reads of the active segment use it), and reads of
closed segments go through :class:`FileCache`, an LRU of read-only fds with a fixed bound.
"""

from __future__ import annotations

import os
import resource
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

DEFAULT_CAPACITY = 256
_IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024


@dataclass(slots=True)
class _Entry:
    fd: int
    pins: int = 0
    evicted: bool = False  # close when the last pin is released


class FileCache:
    """LRU of read-only fds of segment files, at most ``capacity`` unpinned ones open at once.

    Writers (the active segment of each log) register their own fd; the cache reads through it
    and never closes it. Not thread-safe: call from the event-loop thread only. Flush tickets do
    not use the cache (they own duplicated fds).
    """

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        assert capacity >= 1
        self.capacity = capacity
        self._readers: OrderedDict[str, _Entry] = OrderedDict()
        self._writers: dict[str, int] = {}
        self.opens = 0  # number of os.open calls, for tests and metrics

    @property
    def open_count(self) -> int:
        """Read fds currently held open by the cache (writers not counted)."""
        return len(self._readers)

    def register_writer(self, path: Path, fd: int) -> None:
        """Serve reads of ``path`` from ``fd`` (owned by the caller) until unregistered."""
        self.evict(path)
        self._writers[str(path)] = fd

    def unregister_writer(self, path: Path) -> None:
        """Stop using the writer fd of ``path``; later reads open a read-only fd."""
        self._writers.pop(str(path), None)

    def pread(self, path: Path, size: int, position: int) -> bytes:
        """Up to ``size`` bytes of ``path`` from ``position`` (fewer only at end of file).

        Raises OSError (FileNotFoundError if the segment was deleted meanwhile).
        """
        key = str(path)
        fd = self._writers.get(key)
        if fd is None:
            entry = self._readers.get(key)
            if entry is None:
                entry = self._open(key)
                entry.pins = 0  # nothing else runs until the read returns: no pin needed
            else:
                self._readers.move_to_end(key)
            fd = entry.fd
        return pread_exact(fd, size, position)

    @contextmanager
    def acquire(self, path: Path) -> Iterator[int]:
        """An fd for reading ``path``, kept open until the ``with`` block ends (e.g. sendfile).

        The fd is owned by the cache: do not close it. Raises OSError.
        """
        key = str(path)
        writer = self._writers.get(key)
        if writer is not None:
            yield writer
            return
        entry = self._readers.get(key)
        if entry is None:
            entry = self._open(key)
        else:
            self._readers.move_to_end(key)
            entry.pins += 1
        try:
            yield entry.fd
        finally:
            entry.pins -= 1
            if entry.evicted and entry.pins == 0:
                os.close(entry.fd)

    def _open(self, key: str) -> _Entry:
        """Open and cache a read fd, pinned once (so shrinking cannot close it)."""
        entry = _Entry(os.open(key, os.O_RDONLY | os.O_CLOEXEC), pins=1)
        self.opens += 1
        self._readers[key] = entry
        self._shrink()
        return entry

    def evict(self, path: Path) -> None:
        """Close the cached read fd of ``path`` (e.g. before deleting or truncating the file)."""
        entry = self._readers.pop(str(path), None)
        if entry is not None:
            self._close(entry)

    def evict_under(self, directory: Path) -> None:
        """Close every cached read fd of a file inside ``directory`` (a log being closed)."""
        prefix = str(directory) + os.sep
        for key in [k for k in self._readers if k.startswith(prefix)]:
            self._close(self._readers.pop(key))

    def close(self) -> None:
        """Close every cached read fd (writers are left to their owners)."""
        while self._readers:
            self._close(self._readers.popitem(last=False)[1])

    def _shrink(self) -> None:
        if len(self._readers) <= self.capacity:
            return
        for key in list(self._readers):
            if len(self._readers) <= self.capacity:
                break
            if self._readers[key].pins == 0:
                self._close(self._readers.pop(key))

    @staticmethod
    def _close(entry: _Entry) -> None:
        if entry.pins:
            entry.evicted = True
        else:
            os.close(entry.fd)


def pread_exact(fd: int, size: int, position: int) -> bytes:
    """``size`` bytes from ``position``, looping over short reads; fewer only at end of file."""
    data = os.pread(fd, size, position)
    if len(data) == size or not data:
        return data
    parts = [data]
    got = len(data)
    while got < size:
        chunk = os.pread(fd, size - got, position + got)
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def write_all(fd: int, buffers: Sequence[bytes | memoryview]) -> int:
    """Write every buffer in order with as few ``writev`` calls as possible; return the bytes.

    Handles partial writes and the IOV_MAX limit. Raises OSError; on error an unknown prefix of
    the data may have been written (callers truncate back).
    """
    if len(buffers) <= _IOV_MAX:  # the usual case: one writev writes everything
        expected = sum(len(b) for b in buffers)
        written = os.writev(fd, buffers)
        if written == expected:
            return written
        return written + write_all(fd, _after(buffers, written))
    total = 0
    pending = list(buffers)
    while pending:
        chunk = pending[:_IOV_MAX]
        written = os.writev(fd, chunk)
        total += written
        done = 0
        while done < len(chunk) and written >= len(chunk[done]):
            written -= len(chunk[done])
            done += 1
        pending = pending[done:]
        if written:
            pending[0] = memoryview(pending[0])[written:]
    return total


def _after(buffers: Sequence[bytes | memoryview], written: int) -> list[bytes | memoryview]:
    """The buffers' bytes after the first ``written`` ones."""
    rest: list[bytes | memoryview] = []
    for buf in buffers:
        if written >= len(buf):
            written -= len(buf)
            continue
        rest.append(memoryview(buf)[written:] if written else buf)
        written = 0
    return rest


def raise_nofile_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (capped at 1 Mi); return the new soft limit.

    Called once by the node at start. Never lowers the limit; leaves it as is if not permitted.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = 1 << 20 if hard == resource.RLIM_INFINITY else min(hard, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            return soft
        return target
    return soft
