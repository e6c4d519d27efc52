"""Errors the storage engine raises on purpose. Anything else escaping storage is a bug.

Each class declares only its ``code``; whether it is retriable comes from that code's entry in
:mod:`wire.error_codes`. Only ``node/http_errors.py`` maps these to HTTP; storage knows nothing
of HTTP. Thread-safe (plain exception classes).
"""

from __future__ import annotations

from wire.errors import TabletLogError


class StorageError(TabletLogError):
    """Base for storage errors."""


class CorruptSegment(StorageError):
    """A closed segment holds a batch that fails its checksum: the replica must re-sync."""

    code = "corrupt_segment"

    def __init__(self, path: str, position: int, reason: str) -> None:
        super().__init__(f"corrupt data in {path} at byte {position}: {reason}")
        self.path = path
        self.position = position


class OffsetOutOfRange(StorageError):
    """A read asked for an offset outside [start_offset, end_offset]; retry inside that range."""

    code = "offset_out_of_range"

    def __init__(self, requested: int, start_offset: int, end_offset: int) -> None:
        super().__init__(
            f"offset {requested} is out of range: valid offsets are [{start_offset}, {end_offset})"
        )
        self.requested = requested
        self.start_offset = start_offset
        self.end_offset = end_offset


class NonContiguousAppend(StorageError):
    """A follower append does not start at the log's end offset (a gap or an overlap).

    The follower should re-fetch from its end offset, or truncate first.
    """

    code = "non_contiguous_append"

    def __init__(self, expected: int, got: int) -> None:
        super().__init__(f"append must start at offset {expected}, got {got}")
        self.expected = expected
        self.got = got


class DuplicateSequence(StorageError):
    """An idempotent producer resent a batch the log already holds.

    Not a failure: ``base_offset``/``end_offset`` are where the original landed.
    """

    code = "duplicate_sequence"

    def __init__(self, base_offset: int, end_offset: int) -> None:
        super().__init__(f"duplicate of the batch already stored at [{base_offset}, {end_offset})")
        self.base_offset = base_offset
        self.end_offset = end_offset


class OutOfOrderSequence(StorageError):
    """An idempotent producer's sequence skips ahead or goes back beyond what is remembered.

    The producer lost track of what was written; it must start a new producer session.
    """

    code = "out_of_order_sequence"


class InvalidProducerEpoch(StorageError):
    """A producer id was reused with an older epoch than the log has seen (a zombie producer)."""

    code = "invalid_producer_epoch"


class LogClosed(StorageError):
    """The log was closed (tablet deleted or node stopping); the operation did not happen."""

    code = "log_closed"


class DiskFull(StorageError):
    """A write failed because the disk is full; nothing of the request was appended.

    Retry after retention or an operator freed space.
    """

    code = "disk_full"

    def __init__(self, directory: str) -> None:
        super().__init__(f"no space left on the device of {directory}")
        self.directory = directory


class StaleLeaderEpoch(StorageError):
    """A leader append carried an epoch older than the newest one this log has seen.

    The caller is no longer the leader (or raced a leadership change): refresh metadata.
    """

    code = "stale_leader_epoch"

    def __init__(self, epoch: int, latest_epoch: int) -> None:
        super().__init__(f"leader epoch {epoch} is older than the log's latest {latest_epoch}")
        self.epoch = epoch
        self.latest_epoch = latest_epoch


class FlushFailed(StorageError):
    """An fsync failed: appends waiting for durability were not made durable.

    The log should be closed and reopened (recovery), since the kernel may have dropped the
    unwritten pages.
    """

    code = "flush_failed"


class LogTruncated(StorageError):
    """The log was truncated (or emptied) while an append waited to become durable.

    The append may be gone; a leader answers its producer with a retriable error.
    """

    code = "log_truncated"
