"""Which tablet a record goes to: the one rule the server and every client must share.

A record with a key goes to ``crc32c(key) % tablets`` — stable across processes, versions and
machines (Python's ``hash`` is salted per process, so it is never used). Keyless records are
spread by the caller (round robin). Pure and thread-safe.
"""

from __future__ import annotations

from wire.batch import crc32c


def tablet_for_key(key: bytes, tablets: int) -> int:
    """The tablet index in ``[0, tablets)`` for ``key``."""
    if tablets <= 0:
        raise ValueError("a log has at least one tablet")
    return crc32c(key) % tablets
