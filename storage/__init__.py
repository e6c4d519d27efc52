"""Storage engine: one segmented, checksummed log per tablet replica (see log.py).

Only ``group_commit`` imports asyncio; everything else is synchronous and I/O-bound.
"""

from storage.config import LogConfig
from storage.files import FileCache, raise_nofile_limit
from storage.flush import FlushTicket
from storage.log import TabletLog
from storage.manager import LogManager
from storage.results import AppendResult, LogStats, ReadResult

__all__ = [
    "AppendResult",
    "FileCache",
    "FlushTicket",
    "LogConfig",
    "LogManager",
    "LogStats",
    "ReadResult",
    "TabletLog",
    "raise_nofile_limit",
]
