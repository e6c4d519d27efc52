"""The metadata map replicated by Raft (pysyncobj 0.3.17). With :mod:`replication.raft_transport`
(its hardened TCP transport), the only module importing pysyncobj.

One ``SyncObj`` subclass holds the plain-dict state of :mod:`replication.model` and exposes a
single ``@replicated`` method, ``apply_command(entry)``, whose body calls the pure
``model.apply_entry`` and then publishes a new immutable :class:`ClusterView` through
``on_view``. Entries are commands encoded by :mod:`replication.command_codec` (versioned plain
dicts, never our classes). pysyncobj is made safe as docs/architecture.md#metadata-map and the
measured pysyncobj facts (summarised here) require:

* **Authentication**: ``password`` = the cluster secret. pysyncobj unpickles every inbound frame;
  with a password, frames that do not decrypt under the cluster key are dropped *before*
  unpickling, so a stranger can neither run code on a node nor join the cluster.
  ``bindAddress`` is the node's own bind host, never 0.0.0.0 by default.
* **A port strangers can reach**: the transport is :class:`replication.raft_transport.
  HardenedTransport` — frame sizes checked before buffering, a handshake deadline, a listener
  that survives accept errors (EMFILE) — configured from ``RaftSettings``.
* **Durability**: the journal is :class:`replication.raft_journal.DurableJournal` (fsync per
  entry, term and vote fsync'ed before voting) instead of pysyncobj's unflushed mmap, and the
  snapshot (``dump``) is written with fsync through the custom serializer below.
* **No poison pills**: ``apply_command`` never raises (apply_entry never does, and a last
  try/except turns a bug into a recorded no-op), because a raising apply hangs every voter.
* **Snapshots hold builtins only** and are read back with an unpickler that refuses every
  global, so even a forged snapshot cannot name a callable.

Threading: the SyncObj runs its own tick thread, which applies entries and calls callbacks,
``on_view`` and the (de)serializer. It exits when the thread that *constructed* the SyncObj
exits, so construct :class:`RaftState` on the main thread. The public methods are safe to call
from any thread (they only enqueue commands or read single attributes).
"""

from __future__ import annotations

import dataclasses
import functools
import io
import logging
import pickle
import struct
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pysyncobj.syncobj as _syncobj_module
from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, replicated
from pysyncobj.journal import MemoryJournal

from replication import model
from replication.command_base import Result
from replication.command_codec import Entry
from replication.errors import MetadataTimeout, MetadataUnavailable, ReplicationError
from replication.model import ClusterView
from replication.raft_journal import DurableJournal, fsync_path
from replication.raft_transport import HardenedTransport, RaftPortLimits
from replication.settings import RaftSettings

log = logging.getLogger(__name__)

Callback = Callable[[Result | None, int], None]
"""``callback(result, fail_reason)`` of a submitted command; runs on pysyncobj's thread (or
on the submitting thread when the queue is full)."""

SNAPSHOT_MAGIC = b"TLSNAP01"
_SNAPSHOT_HEAD = struct.Struct("<I")


def _create_journal(journal_file: str | None) -> Any:
    """pysyncobj's journal factory, replaced so every file journal is durable."""
    if journal_file is None:
        return MemoryJournal()
    return DurableJournal(journal_file, Path(journal_file).with_name("dump"), _snapshot_entries)


def _snapshot_entries(path: Path) -> tuple[Any, Any] | None:
    """The (prev, last) Raft entries a snapshot file ends with, or None if unreadable."""
    try:
        payload = decode_snapshot(path.read_bytes())
        return tuple(payload["prev"]), tuple(payload["last"])
    except (OSError, ValueError, TypeError, KeyError):
        return None


# pysyncobj builds its journal with the module-level name ``createJournal`` (syncobj.py:166);
# there is no hook, so the name is replaced for every SyncObj in this process.
_syncobj_module.createJournal = _create_journal


def error_for(fail_reason: int) -> ReplicationError | None:
    """The error for a pysyncobj ``FAIL_REASON`` (None for SUCCESS). The only such mapping.

    QUEUE_FULL, MISSING_LEADER, NOT_LEADER, REQUEST_DENIED and DISCARDED mean the command was
    not (and will not be) applied; LEADER_CHANGED and UNKNOWN_OUTCOME mean it may have been.
    """
    if fail_reason == FAIL_REASON.SUCCESS:
        return None
    if fail_reason == FAIL_REASON.QUEUE_FULL:
        return MetadataUnavailable("the metadata command queue is full")
    if fail_reason == FAIL_REASON.MISSING_LEADER:
        return MetadataUnavailable("no metadata (Raft) leader is known")
    if fail_reason == FAIL_REASON.NOT_LEADER:
        return MetadataUnavailable("the node the command was sent to is not the Raft leader")
    if fail_reason == FAIL_REASON.DISCARDED:
        return MetadataUnavailable("the command was discarded by a new Raft leader")
    if fail_reason == FAIL_REASON.REQUEST_DENIED:
        return MetadataUnavailable("the Raft leader denied the request")
    if fail_reason == FAIL_REASON.LEADER_CHANGED:
        return MetadataTimeout("the Raft leader changed; the command may or may not be applied")
    return MetadataTimeout(f"outcome of the metadata command is unknown (reason {fail_reason})")


class _BuiltinsOnly(pickle.Unpickler):
    """Unpickler for snapshots: builtins only, so no pickle can name a callable."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"snapshot may not reference {module}.{name}")


def encode_snapshot(payload: dict[str, Any]) -> bytes:
    body = pickle.dumps(payload, protocol=5)
    return SNAPSHOT_MAGIC + _SNAPSHOT_HEAD.pack(zlib.crc32(body)) + body


def decode_snapshot(data: bytes) -> dict[str, Any]:
    """Inverse of :func:`encode_snapshot`; raises ValueError or TypeError on any damage."""
    head = len(SNAPSHOT_MAGIC) + _SNAPSHOT_HEAD.size
    if not data.startswith(SNAPSHOT_MAGIC) or len(data) < head:
        raise ValueError("not a tabletlog metadata snapshot")
    (crc,) = _SNAPSHOT_HEAD.unpack_from(data, len(SNAPSHOT_MAGIC))
    body = data[head:]
    if zlib.crc32(body) != crc:
        raise ValueError("metadata snapshot fails its checksum")
    try:
        payload = _BuiltinsOnly(io.BytesIO(body)).load()
    except (pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise ValueError(f"unreadable metadata snapshot: {exc}") from exc
    if not isinstance(payload, dict) or not isinstance(payload.get("state"), dict):
        raise TypeError("malformed metadata snapshot")
    return payload


class _MetadataSyncObj(SyncObj):  # type: ignore[misc]  # pysyncobj is untyped
    """The replicated object. Holds no state itself: ``apply`` owns it."""

    def __init__(
        self,
        self_node: str | None,
        other_nodes: Sequence[str],
        conf: SyncObjConf,
        apply: Callable[[_MetadataSyncObj, object], Result],
        limits: RaftPortLimits,
    ) -> None:
        self._apply_fn = apply  # set before super().__init__: excluded from pysyncobj's dump
        super().__init__(
            self_node,
            list(other_nodes),
            conf,
            transportClass=functools.partial(HardenedTransport, limits=limits),
        )

    @replicated  # type: ignore[untyped-decorator]  # pysyncobj is untyped
    def apply_command(self, entry: object) -> Result:
        return self._apply_fn(self, entry)


def port_limits(settings: RaftSettings) -> RaftPortLimits:
    """The Raft port's hardening limits from the settings (milliseconds become seconds)."""
    return RaftPortLimits(
        max_frame_bytes=settings.max_frame_bytes,
        handshake_timeout_s=settings.handshake_timeout_ms / 1000,
        max_pending_connections=settings.max_pending_connections,
        accept_retry_s=settings.accept_retry_ms / 1000,
    )


def sync_conf(settings: RaftSettings, node_id: str, raft_dir: Path, **extra: Any) -> SyncObjConf:
    """pysyncobj settings for ``node_id``: secret, bind address, files and Raft timers."""
    min_s = settings.min_timeout_ms / 1000
    max_s = max(settings.max_timeout_ms, settings.min_timeout_ms + 1) / 1000  # pysyncobj: max > min
    return SyncObjConf(
        password=settings.secret,
        bindAddress=settings.member(node_id).raft_bind,
        journalFile=str(raft_dir / "journal"),
        fullDumpFile=str(raft_dir / "dump"),
        useFork=False,
        appendEntriesUseBatch=False,
        commandsWaitLeader=False,
        dynamicMembershipChange=False,
        appendEntriesPeriod=settings.append_entries_period_ms / 1000,
        raftMinTimeout=min_s,
        raftMaxTimeout=max_s,
        connectionTimeout=max(settings.connection_timeout_ms / 1000, max_s),
        connectionRetryTime=settings.connection_retry_ms / 1000,
        leaderFallbackTimeout=settings.leader_fallback_timeout_ms / 1000,
        # pysyncobj caches peer addresses for 10 minutes by default: a peer that comes back
        # under a new address (a restarted container) would stay unreachable that long.
        dnsCacheTime=2.0,
        dnsFailCacheTime=1.0,
        **extra,
    )


class RaftState:
    """The local replica of the metadata map; see the module docstring for the guarantees.

    Files live in ``raft_dir`` (normally ``<data_dir>/raft``). ``on_view(view)`` is called on
    pysyncobj's thread with each new view, ``on_ready()`` once when this node has caught up with
    the leader's commit index. ``voters`` (default: every member of ``settings``) are the Raft
    members; any other node follows the log as a read-only observer. Methods are thread-safe.
    """

    def __init__(
        self,
        settings: RaftSettings,
        node_id: str,
        raft_dir: str | Path,
        on_view: Callable[[ClusterView], None],
        *,
        on_ready: Callable[[], None] | None = None,
        voters: Sequence[str] | None = None,
        compaction_min_entries: int = 5000,
        compaction_min_time_s: float = 300.0,
    ) -> None:
        raft_dir = Path(raft_dir)
        if not raft_dir.is_dir():
            raft_dir.mkdir(parents=True)
            fsync_path(raft_dir.parent)  # a crash must not lose the directory of the journal
        self._state = model.initial_state(settings.cluster_name, settings.api_addresses())
        self.initial_view = model.to_view(self._state)
        self._on_view = on_view
        self._dirty = False
        self.snapshot_error: str | None = None
        voter_ids = list(voters) if voters else [m.id for m in settings.members]
        self._node_by_raft = {settings.member(v).raft_address: v for v in voter_ids}
        self.node_id = node_id
        conf = sync_conf(
            settings,
            node_id,
            raft_dir,
            serializer=self._write_snapshot,
            deserializer=self._read_snapshot,
            logCompactionMinEntries=compaction_min_entries,
            logCompactionMinTime=compaction_min_time_s,
            onReady=on_ready,
        )
        self_node = settings.member(node_id).raft_address if node_id in voter_ids else None
        others = [settings.member(v).raft_address for v in voter_ids if v != node_id]
        self._sync = _MetadataSyncObj(self_node, others, conf, self._apply, port_limits(settings))
        self._sync.addOnTickCallback(self._on_tick)

    # ------------------------------------------------------------------ pysyncobj thread

    def _apply(self, sync: _MetadataSyncObj, entry: object) -> Result:
        index = int(sync.raftLastApplied) + 1
        try:
            result = model.apply_entry(self._state, entry)
        except Exception as exc:
            log.exception("metadata apply failed at index %d", index)
            result = Result.rejected("internal", repr(exc))
        if not result.ok:
            log.info("metadata command at index %d rejected: %s", index, result)
        result = dataclasses.replace(result, index=index)
        if index >= int(sync.raftCommitIndex):
            self._publish(index)
        else:  # replaying a backlog: one view at the end of the tick is enough
            self._dirty = True
        return result

    def _on_tick(self) -> None:
        if self._dirty:
            self._publish(int(self._sync.raftLastApplied))

    def _publish(self, index: int) -> None:
        self._dirty = False
        try:
            self._on_view(model.to_view(self._state, index))
        except Exception:  # a consumer bug must not stop Raft
            log.exception("publishing the metadata view failed")

    def _write_snapshot(self, path: str, entries: tuple[Any, ...]) -> None:
        last, prev, cluster = entries
        payload = {
            "state": self._state,
            "last": tuple(last),
            "prev": tuple(prev),
            "cluster": sorted(str(node) for node in cluster),
        }
        with Path(path).open("wb") as f:
            f.write(encode_snapshot(payload))
            f.flush()
            fsync_path(Path(path))

    def _read_snapshot(self, path: str) -> tuple[Any, Any, Any]:
        try:
            payload = decode_snapshot(Path(path).read_bytes())
        except (OSError, ValueError, TypeError) as exc:
            # The journal behind the snapshot is gone, so applying on top of the initial state
            # would build a wrong map: stay unready and say why.
            self.snapshot_error = str(exc)
            log.critical("cannot load the metadata snapshot %s: %s", path, exc)
            raise
        self._state = payload["state"]
        last = payload["last"]
        self._publish(int(last[1]))
        return last, payload["prev"], payload["cluster"]

    # ------------------------------------------------------------------ any thread

    def submit(self, entry: Entry, callback: Callback) -> None:
        """Propose ``entry``; ``callback(result, fail_reason)`` fires once, on some thread.

        ``result`` (on SUCCESS) is the command's result with ``index``, the Raft index of the
        entry. The callback may never fire (pysyncobj loses some): always time out.
        """

        def guarded(result: Result | None, fail_reason: int) -> None:
            try:
                callback(result, fail_reason)
            except Exception:  # must not propagate into pysyncobj's tick
                log.exception("metadata command callback failed")

        self._sync.apply_command(entry, callback=guarded)

    def is_raft_leader(self) -> bool:
        """Whether this node believes it is Raft leader (several may, briefly: never a fence)."""
        return bool(self._sync._isLeader())

    def raft_leader_id(self) -> str | None:
        """Node id of the last known Raft leader, or None."""
        leader = self._sync._getLeader()
        return None if leader is None else self._node_by_raft.get(str(leader.id))

    def raft_term(self) -> int:
        return int(self._sync.raftCurrentTerm)

    def is_ready(self) -> bool:
        """True once this node has applied the leader's commit index (stays true after)."""
        return bool(self._sync.isReady()) and self.snapshot_error is None

    def status(self) -> dict[str, Any]:
        """Raft counters for /v1/cluster-style diagnostics (values may be a tick apart)."""
        return {
            "node": self.node_id,
            "raft_leader": self.raft_leader_id(),
            "is_raft_leader": self.is_raft_leader(),
            "raft_term": self.raft_term(),
            "commit_index": int(self._sync.raftCommitIndex),
            "last_applied": int(self._sync.raftLastApplied),
            "ready": self.is_ready(),
            "snapshot_error": self.snapshot_error,
        }

    def force_compaction(self) -> None:
        """Write a snapshot and cut the journal at the next tick (tests, operators)."""
        self._sync.forceLogCompaction()

    def close(self) -> None:
        """Stop the tick thread and close files; waits for the thread to end."""
        self._sync.destroy_synchronous()
