"""The error base every tabletlog layer and the client share. Thread-safe (plain classes)."""

from __future__ import annotations

from typing import ClassVar


class TabletLogError(Exception):
    """Base for every error raised on purpose by tabletlog (storage, replication, node, client).

    ``retriable`` tells a caller whether the same request may succeed later unchanged.
    """

    retriable: ClassVar[bool] = False
    code: ClassVar[str] = "internal"


class CorruptBatch(TabletLogError):
    """Bytes that should hold a record batch fail a length or checksum check.

    On the append path the request is rejected; in a segment it means the replica must re-sync
    from the leader. Corrupt bytes are never served.
    """

    code = "corrupt_batch"
