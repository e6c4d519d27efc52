"""Per-log storage settings (a subset of a log's config in the cluster map)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from storage.producers import DEFAULT_EXPIRATION_MS, DEFAULT_MAX_PRODUCERS

FsyncPolicy = Literal["always", "never"] | int
"""``always``: an append is durable before it is acknowledged (group commit);
``never``: leave flushing to the OS; an int: fsync at most that many milliseconds after a write."""


@dataclass(frozen=True, slots=True)
class LogConfig:
    """Storage settings of one tablet's log. Immutable; thread-safe."""

    segment_bytes: int = 64 * 1024 * 1024
    segment_ms: int | None = 7 * 24 * 3600 * 1000
    retention_ms: int | None = 7 * 24 * 3600 * 1000
    retention_bytes: int | None = None
    fsync: FsyncPolicy = "always"
    index_interval_bytes: int = 4096
    verify_reads: bool = True
    """Check both CRCs of every batch a read returns (the bytes are then read, not sliced)."""
    tail_cache_bytes: int = 8 * 1024 * 1024
    """Keep about this many bytes of the newest batches in memory to serve followers and
    tailing consumers without reading the file (storage/tail_cache.py); 0 turns it off."""
    page_cache_window_bytes: int | None = 32 * 1024 * 1024
    """After each fsync, evict this log's pages older than its newest ``page_cache_window_bytes``
    from the page cache (``posix_fadvise(DONTNEED)``; they are clean by then). The freed pages
    are reused by the next writes, which then cost a copy into warm memory instead of faulting
    in fresh pages: on this project's VMs that made a 1 MiB ``write`` 4-10x cheaper (see
    storage/segments.py). Followers and tailing consumers read within the window; readers
    further behind read from disk. None leaves caching to the kernel; no effect with
    ``fsync: never`` (pages are never known to be clean)."""

    max_producer_ids: int = DEFAULT_MAX_PRODUCERS
    """Idempotent producers remembered per tablet replica; beyond it the least recently written
    is forgotten (its retries are then no longer recognised as duplicates). Ids are free to
    init, so this bounds what strangers can make a replica hold: measured ~1.7 KiB of memory
    and ~0.2 KiB of ``producer-state`` snapshot per producer with 5 remembered batches (~17 MiB
    and ~1.7 MiB at the default), while real deployments have far fewer producers writing one
    tablet within the expiration time; LRU evicts short-lived sessions (CLI runs) first."""
    producer_id_expiration_ms: int | None = DEFAULT_EXPIRATION_MS
    """A producer that has not written for this long is forgotten (at the next roll, close or
    open), as Kafka's ``producer.id.expiration.ms`` (default 1 day); None keeps them."""

    def __post_init__(self) -> None:
        if self.segment_bytes < 1024:
            raise ValueError("segment_bytes must be at least 1024")
        if self.segment_ms is not None and self.segment_ms <= 0:
            raise ValueError("segment_ms must be positive or null")
        if self.retention_ms is not None and self.retention_ms <= 0:
            raise ValueError("retention_ms must be positive or null")
        if self.retention_bytes is not None and self.retention_bytes <= 0:
            raise ValueError("retention_bytes must be positive or null")
        if (
            isinstance(self.fsync, bool)
            or (isinstance(self.fsync, int) and self.fsync <= 0)
            or (isinstance(self.fsync, str) and self.fsync not in ("always", "never"))
        ):
            raise ValueError("fsync must be 'always', 'never' or a positive number of milliseconds")
        if self.index_interval_bytes <= 0:
            raise ValueError("index_interval_bytes must be positive")
        if self.tail_cache_bytes < 0:
            raise ValueError("tail_cache_bytes must be >= 0")
        if self.page_cache_window_bytes is not None and self.page_cache_window_bytes < 0:
            raise ValueError("page_cache_window_bytes must be >= 0 or null")
        if self.max_producer_ids < 1:
            raise ValueError("max_producer_ids must be positive")
        if self.producer_id_expiration_ms is not None and self.producer_id_expiration_ms <= 0:
            raise ValueError("producer_id_expiration_ms must be positive or null")
