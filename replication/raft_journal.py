"""A crash-durable Raft journal and snapshot file for pysyncobj (replaces its mmap journal).

pysyncobj 0.3.17 writes its journal into an mmap that is never flushed and its metadata and
snapshot without fsync, so a machine crash (not just a process kill) can lose entries it has
acknowledged. This journal keeps pysyncobj's ``Journal`` interface and makes every change
durable before pysyncobj acts on it: an appended entry is fdatasync'ed before the follower acks
it (or the leader counts itself), the term and vote are fsync'ed before any vote is sent, and the
snapshot file is fsync'ed (with its directory) before the journal is cut behind it.

Files in the node's ``<data_dir>/raft/`` directory::

    journal       b"TLJRNL01", then records: u32 body length | u32 CRC-32 of body | body,
                  body = u64 index | u64 term | command bytes (all little-endian)
    journal.meta  JSON {"term", "voted_for", "commit_index"}; replaced atomically
    dump          the snapshot (format in raft_state.py), written by pysyncobj's compaction

On open, records are read until the first torn or corrupt one; the file is cut there (a torn
tail is the normal result of a crash during an append, which was never acknowledged). Not
thread-safe: pysyncobj calls it from its tick thread only.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MAGIC = b"TLJRNL01"
_HEAD = struct.Struct("<II")
_BODY = struct.Struct("<QQ")
Entry = tuple[bytes, int, int]
DumpReader = Callable[[Path], tuple[Entry, Entry] | None]
"""Returns the snapshot's (prev, last) entries, or None when there is no readable snapshot."""


def fsync_path(path: Path) -> None:
    """fsync a file or directory by path; a missing file is skipped."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old or the new file, durably."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    fsync_path(path.parent)


def _record(entry: Entry) -> bytes:
    command, idx, term = entry
    body = _BODY.pack(idx, term) + bytes(command)
    return _HEAD.pack(len(body), zlib.crc32(body)) + body


def _parse(data: bytes) -> tuple[list[Entry], list[int], int]:
    """Entries, their file offsets, and the length of the valid prefix of ``data``."""
    entries: list[Entry] = []
    offsets: list[int] = []
    pos = len(MAGIC)
    while pos + _HEAD.size <= len(data):
        length, crc = _HEAD.unpack_from(data, pos)
        body = data[pos + _HEAD.size : pos + _HEAD.size + length]
        if length < _BODY.size or len(body) != length or zlib.crc32(body) != crc:
            break
        idx, term = _BODY.unpack_from(body)
        if entries and idx != entries[-1][1] + 1:
            break
        entries.append((bytes(body[_BODY.size :]), idx, term))
        offsets.append(pos)
        pos += _HEAD.size + length
    return entries, offsets, pos


class DurableJournal:
    """pysyncobj ``Journal`` whose every mutation is on disk before the call returns.

    ``dump_path`` is the snapshot file: it is made durable before the journal forgets the
    entries the snapshot replaces (``clear`` and ``deleteEntriesTo``). ``read_dump`` lets the
    journal finish a compaction a crash interrupted (see :meth:`_finish_compaction`).
    """

    def __init__(
        self,
        path: str | Path,
        dump_path: str | Path | None = None,
        read_dump: DumpReader | None = None,
    ) -> None:
        self._path = Path(path)
        self._dump_path = Path(dump_path) if dump_path else None
        self._meta_path = self._path.with_name(self._path.name + ".meta")
        self._meta = self._read_meta()
        self._meta_dirty = False
        self._entries, self._offsets, self._end = self._load()
        self._fd = os.open(self._path, os.O_RDWR)
        if read_dump is not None and self._dump_path is not None and self._dump_path.exists():
            self._finish_compaction(read_dump(self._dump_path))

    def _finish_compaction(self, dump_entries: tuple[Entry, Entry] | None) -> None:
        """Cut the journal where the snapshot ends, if a crash came between the two.

        pysyncobj writes the snapshot, then cuts the journal a tick later. On start it keeps
        the journal only if its first two entries are the snapshot's last two, and otherwise
        *clears* it, dropping every entry after the snapshot. A node killed inside that tick
        (likely: every voter compacts at the same entry count) would lose entries it had
        acknowledged, so complete the cut here, as the compaction would have.
        """
        if dump_entries is None:
            return
        prev, last = (tuple(e) for e in dump_entries)
        for i in range(len(self._entries) - 1):
            if self._entries[i] == prev and self._entries[i + 1] == last:
                if i > 0:
                    log.info(
                        "Raft journal %s: finishing a compaction interrupted by a crash "
                        "(dropping %d entries in the snapshot)",
                        self._path,
                        i,
                    )
                    self.deleteEntriesTo(i)
                return

    # ------------------------------------------------------------------ opening

    def _read_meta(self) -> dict[str, Any]:
        try:
            meta = json.loads(self._meta_path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            # Written atomically, so this is disk damage. Starting as if this voter had never
            # voted could make it vote twice in one term, so refuse to start.
            raise RuntimeError(f"unreadable Raft metadata {self._meta_path}: {exc}") from exc
        if not isinstance(meta, dict):
            raise TypeError(f"malformed Raft metadata {self._meta_path}")
        return meta

    def _load(self) -> tuple[list[Entry], list[int], int]:
        if not self._path.exists():
            write_atomically(self._path, MAGIC)
        data = self._path.read_bytes()
        if not data.startswith(MAGIC):
            raise RuntimeError(f"{self._path} is not a tabletlog Raft journal")
        entries, offsets, end = _parse(data)
        if end != len(data):
            log.warning(
                "Raft journal %s: cutting %d bytes of torn or corrupt tail after %d entries",
                self._path,
                len(data) - end,
                len(entries),
            )
            os.truncate(self._path, end)
            fsync_path(self._path)
        return entries, offsets, end

    # ------------------------------------------------------------------ Journal interface

    def add(self, command: bytes, idx: int, term: int) -> None:
        record = _record((command, idx, term))
        os.pwrite(self._fd, record, self._end)
        os.fdatasync(self._fd)
        self._entries.append((bytes(command), idx, term))
        self._offsets.append(self._end)
        self._end += len(record)

    def clear(self) -> None:
        # Called when a snapshot replaces the log: the snapshot must survive a crash first.
        self._sync_dump()
        self._truncate(0)

    def deleteEntriesFrom(self, entryFrom: int) -> None:
        if entryFrom < len(self._entries):
            self._truncate(entryFrom)

    def deleteEntriesTo(self, entryTo: int) -> None:
        """Forget entries before position ``entryTo`` (they are in the snapshot)."""
        self._sync_dump()
        kept = self._entries[entryTo:]
        data = MAGIC + b"".join(_record(e) for e in kept)
        write_atomically(self._path, data)
        os.close(self._fd)
        self._fd = os.open(self._path, os.O_RDWR)
        self._entries, self._offsets, self._end = _parse(data)
        assert len(self._entries) == len(kept) and self._end == len(data)

    def __getitem__(self, item: Any) -> Any:
        return self._entries[item]

    def __len__(self) -> int:
        return len(self._entries)

    def _destroy(self) -> None:
        self.onOneSecondTimer()
        os.close(self._fd)

    def flush(self) -> None:
        """Nothing to do: every write is already durable."""

    def setRaftCommitIndex(self, raftCommitIndex: int) -> None:
        # The commit index is volatile state in Raft; pysyncobj only uses it to replay faster
        # after a restart, so it is stored lazily (at most once a second), like upstream.
        if self._meta.get("commit_index") != raftCommitIndex:
            self._meta["commit_index"] = raftCommitIndex
            self._meta_dirty = True

    def getRaftCommitIndex(self) -> int:
        return int(self._meta.get("commit_index", 1))

    def setCurrentTerm(self, term: int, votedForNodeId: str | None) -> None:
        # Raft: term and vote must be durable before any message reflecting them is sent.
        self._meta["term"] = term
        self._meta["voted_for"] = votedForNodeId
        self._store_meta()

    def getCurrentTerm(self) -> int:
        return int(self._meta.get("term", 0))

    def getVotedForNodeId(self) -> str | None:
        voted = self._meta.get("voted_for")
        return voted if isinstance(voted, str) else None

    def onOneSecondTimer(self) -> None:
        if self._meta_dirty:
            self._store_meta()

    # ------------------------------------------------------------------ helpers

    def _store_meta(self) -> None:
        write_atomically(self._meta_path, json.dumps(self._meta).encode())
        self._meta_dirty = False

    def _truncate(self, position: int) -> None:
        end = self._offsets[position] if position < len(self._offsets) else self._end
        if position == 0:
            end = len(MAGIC)
        os.ftruncate(self._fd, end)
        os.fdatasync(self._fd)
        del self._entries[position:]
        del self._offsets[position:]
        self._end = end

    def _sync_dump(self) -> None:
        if self._dump_path is not None:
            fsync_path(self._dump_path)
            fsync_path(self._dump_path.parent)
