"""Values returned by TabletLog: append results, read results (file slices), counters."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from storage.files import FileCache


@dataclass(frozen=True, slots=True)
class AppendResult:
    """Where an append landed: offsets [base_offset, end_offset), all its batches' bytes.

    ``append_time_ms`` is the append time stamped by the leader (for a follower append, the one
    carried by the last batch).
    """

    base_offset: int
    end_offset: int
    append_time_ms: int
    record_count: int
    size_bytes: int


@dataclass(frozen=True, slots=True)
class ReadResult:
    """Whole batches as a slice of one segment file: ``size`` bytes at ``position`` of ``path``.

    ``first_offset`` is the base offset of the first batch (it may be below the offset asked
    for: the batch holding it is returned whole), ``end_offset`` the exclusive end of the last
    batch. An empty result has ``path`` None, ``size`` 0 and ``first_offset == end_offset``.

    The slice is valid right away on the calling thread: retention or truncation may delete or
    shorten the file later. ``read_bytes()`` returns the bytes (already read and CRC-checked when
    the log verifies reads); for ``sendfile`` use ``files.acquire(path)`` for the fd.
    """

    path: Path | None
    position: int
    size: int
    first_offset: int
    end_offset: int
    data: bytes | None = field(default=None, repr=False, compare=False)
    files: FileCache | None = field(default=None, repr=False, compare=False)

    @property
    def is_empty(self) -> bool:
        """Whether no batch was returned."""
        return self.size == 0

    def read_bytes(self) -> bytes:
        """The slice's bytes (b"" when empty). Raises OSError if the file is gone."""
        if self.data is not None:
            return self.data
        if self.path is None or self.size == 0:
            return b""
        assert self.files is not None
        data = self.files.pread(self.path, self.size, self.position)
        if len(data) != self.size:
            raise OSError(f"{self.path} is shorter than the slice read from it")
        return data


@dataclass(slots=True)
class LogStats:
    """Counters of one log since it was opened (for metrics and tests). Loop thread only."""

    appends: int = 0
    appended_bytes: int = 0
    writes: int = 0  # write/writev system calls on the append path
    flushes: int = 0  # completed flush tickets
    fsyncs: int = 0  # fsync calls made by completed flush tickets
    rolls: int = 0
    reads: int = 0
    read_bytes: int = 0
    cached_reads: int = 0  # reads served by the tail cache (included in reads)
    index_rebuilds: int = 0
    recovered_truncated_bytes: int = 0  # bytes cut from torn or corrupt tails on open
