"""LogManager: the tablet logs of one node, under ``<data_dir>/<log>/tablet-<i>/``.

Log names are restricted to ``[A-Za-z0-9._-]{1,100}`` (and not only dots) so a name can never
escape the data directory. A deleted tablet's directory is renamed to ``tablet-<i>.deleted``
before it is removed; leftovers of an interrupted deletion are removed by ``all_on_disk``.
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from storage.config import LogConfig
from storage.files import FileCache
from storage.layout import DELETED_SUFFIX
from storage.log import TabletLog, wall_clock_ms
from storage.tail_cache import TailCacheBudget

log = logging.getLogger(__name__)

#: Memory all tail caches of a node may hold together (storage/tail_cache.py).
NODE_TAIL_CACHE_BYTES = 256 * 1024 * 1024

_LOG_NAME = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
_TABLET_DIR = re.compile(r"^tablet-(\d+)$")


def validate_log_name(name: str) -> str:
    """Return ``name`` if it is a valid log name; raise ValueError otherwise."""
    if not _LOG_NAME.match(name) or set(name) == {"."}:
        raise ValueError(
            f"invalid log name {name!r}: use 1 to 100 characters from A-Z a-z 0-9 . _ -"
        )
    return name


class LogManager:
    """Opens, tracks and deletes the TabletLogs of one node. Event-loop thread only.

    Every log shares ``files`` (the node's fd budget for closed segments) and ``tail_budget``
    (the node's memory for recent batches).
    """

    def __init__(
        self,
        data_dir: Path,
        files: FileCache,
        *,
        clock_ms: Callable[[], int] = wall_clock_ms,
        tail_cache_bytes: int = NODE_TAIL_CACHE_BYTES,
    ) -> None:
        self.data_dir = data_dir
        self.files = files
        self.tail_budget = TailCacheBudget(tail_cache_bytes)
        self._clock_ms = clock_ms
        self._logs: dict[tuple[str, int], TabletLog] = {}

    def directory_for(self, log_name: str, tablet: int) -> Path:
        """The directory of a tablet's log. Raises ValueError for a bad name or tablet."""
        validate_log_name(log_name)
        if tablet < 0:
            raise ValueError(f"invalid tablet index {tablet}")
        return self.data_dir / log_name / f"tablet-{tablet}"

    def open_log(
        self, log_name: str, tablet: int, config: LogConfig, *, truncate_corrupt: bool = False
    ) -> TabletLog:
        """The open log of the tablet, opening (and recovering or creating) it if needed.

        Raises ValueError (bad name), CorruptSegment (see TabletLog.open), OSError.
        """
        key = (log_name, tablet)
        existing = self._logs.get(key)
        if existing is not None and not existing.is_closed:
            return existing
        directory = self.directory_for(log_name, tablet)
        opened = TabletLog.open(
            directory,
            config,
            clock_ms=self._clock_ms,
            files=self.files,
            truncate_corrupt=truncate_corrupt,
            tail_budget=self.tail_budget,
        )
        self._logs[key] = opened
        return opened

    def get(self, log_name: str, tablet: int) -> TabletLog | None:
        """The open log of the tablet, or None."""
        found = self._logs.get((log_name, tablet))
        return found if found is not None and not found.is_closed else None

    def close_log(self, log_name: str, tablet: int) -> None:
        """Close the tablet's log if open (it stays on disk)."""
        found = self._logs.pop((log_name, tablet), None)
        if found is not None:
            found.close()

    def delete_log(self, log_name: str, tablet: int) -> None:
        """Close the tablet's log if open and remove it from disk (no-op if absent)."""
        directory = self.directory_for(log_name, tablet)
        found = self._logs.pop((log_name, tablet), None)
        if found is not None:
            found.delete()
        elif directory.exists():
            doomed = directory.with_name(directory.name + DELETED_SUFFIX)
            shutil.rmtree(doomed, ignore_errors=True)
            directory.rename(doomed)
            shutil.rmtree(doomed)
        parent = directory.parent
        if parent.exists() and not any(parent.iterdir()):
            parent.rmdir()

    def all_on_disk(self) -> list[tuple[str, int]]:
        """(log name, tablet) of every tablet log under the data directory, sorted.

        Removes leftovers of interrupted deletions on the way.
        """
        found: list[tuple[str, int]] = []
        if not self.data_dir.exists():
            return found
        for log_dir in self.data_dir.iterdir():
            if not log_dir.is_dir() or not _LOG_NAME.match(log_dir.name):
                continue
            for tablet_dir in log_dir.iterdir():
                if tablet_dir.name.endswith(DELETED_SUFFIX):
                    log.info("removing %s (interrupted deletion)", tablet_dir)
                    shutil.rmtree(tablet_dir, ignore_errors=True)
                    continue
                match = _TABLET_DIR.match(tablet_dir.name)
                if match and tablet_dir.is_dir():
                    found.append((log_dir.name, int(match.group(1))))
        return sorted(found)

    def close_all(self) -> None:
        """Close every open log (each flushes and writes its clean-shutdown marker)."""
        logs, self._logs = self._logs, {}
        errors = []
        for key, opened in logs.items():
            try:
                opened.close()
            except OSError as err:
                log.exception("closing log %s tablet %d failed", *key)
                errors.append(err)
        if errors:
            raise errors[0]
