"""The replication protocol between a follower node and a leader node: messages and framing.

A follower keeps **one replication stream per leader node** — a WebSocket on
``/internal/replicate`` (authenticated with the cluster-secret token like every internal call) —
covering every tablet it follows there. Binary messages, the first byte naming the kind:

``F`` fetch (follower → leader), JSON::

    {"replica": "n2", "wait_ms": 500, "max_bytes": 8388608,
     "tablets": [{"log": "orders", "tablet": 0, "leader_epoch": 3, "fetch_offset": 1200,
                  "durable_offset": 1150, "high_watermark": 1100}]}

  ``fetch_offset`` is the follower's end offset (exclusive): where to continue.
  ``durable_offset`` (≤ fetch_offset) is its acknowledgement: every offset below it is written
  and — with ``fsync: always`` — fsynced on the follower. The leader answers each fetch with one
  ``D`` message, at once if it has data beyond ``fetch_offset``, else as soon as data arrives or
  ``wait_ms`` passes. One fetch is outstanding at a time.

``A`` acknowledgement (follower → leader), JSON, no answer::

    {"replica": "n2", "tablets": [["orders", 0, 3, 1200]]}   # log, tablet, epoch, durable

  Sent when an fsync completes, so the leader learns of durability without waiting for the next
  fetch: the follower fetches the next data while it fsyncs the last (pipelining), and acks stay
  as fast as the fsync.

``D`` data (leader → follower), binary so that batch bytes travel exactly as stored::

    4 bytes   big-endian length N of the JSON header
    N bytes   JSON: {"tablets": [{"log", "tablet", "error": null | code,
                                  "leader_epoch", "high_watermark", "start_offset",
                                  "end_offset", "size"}]}
    ...       for each tablet in header order, ``size`` bytes of whole batches

Epoch end offsets (Kafka's OffsetsForLeaderEpoch, KIP-279) are plain HTTP,
``POST /internal/epoch_end``::

    {"log", "tablet", "leader_epoch": follower's view of the current epoch,
     "requested_epoch": the follower's latest epoch}
    → {"epoch": largest epoch ≤ requested known to the leader, "end_offset": its exclusive end}

Pure and thread-safe.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

REPLICATE_PATH = "/internal/replicate"
EPOCH_END_PATH = "/internal/epoch_end"
FETCH = b"F"
ACK = b"A"
DATA = b"D"
MAX_MESSAGE_BYTES = 300 * 1024 * 1024
_LEN = struct.Struct(">I")
MAX_HEADER_BYTES = 16 * 1024 * 1024

# Per-tablet error codes in a fetch response.
FENCED_LEADER_EPOCH = "fenced_leader_epoch"  # the follower's epoch is older than the leader's
UNKNOWN_LEADER_EPOCH = "unknown_leader_epoch"  # the follower is ahead of the leader's metadata
NOT_LEADER = "not_leader"
OFFSET_OUT_OF_RANGE = "offset_out_of_range"
NOT_A_REPLICA = "not_a_replica"
STORAGE_ERROR = "storage_error"


class ProtocolError(ValueError):
    """A fetch message is malformed."""


@dataclass(frozen=True, slots=True)
class FetchPosition:
    """One tablet in a fetch request: where the follower is."""

    log: str
    tablet: int
    leader_epoch: int
    fetch_offset: int
    durable_offset: int
    high_watermark: int

    def to_json(self) -> dict[str, Any]:
        return {
            "log": self.log,
            "tablet": self.tablet,
            "leader_epoch": self.leader_epoch,
            "fetch_offset": self.fetch_offset,
            "durable_offset": self.durable_offset,
            "high_watermark": self.high_watermark,
        }


@dataclass(frozen=True, slots=True)
class FetchRequest:
    replica: str
    wait_ms: int
    max_bytes: int
    positions: tuple[FetchPosition, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "replica": self.replica,
            "wait_ms": self.wait_ms,
            "max_bytes": self.max_bytes,
            "tablets": [p.to_json() for p in self.positions],
        }

    @staticmethod
    def from_json(raw: object) -> FetchRequest:
        """Validate a decoded JSON body; raises ProtocolError with a sentence."""
        if not isinstance(raw, dict):
            raise ProtocolError("fetch request must be a JSON object")
        replica = raw.get("replica")
        wait_ms = raw.get("wait_ms", 0)
        max_bytes = raw.get("max_bytes", 8 * 1024 * 1024)
        tablets = raw.get("tablets")
        if not isinstance(replica, str) or not replica:
            raise ProtocolError("replica must be a node id")
        if not _is_int(wait_ms) or not 0 <= wait_ms <= 60_000:
            raise ProtocolError("wait_ms must be an integer in [0, 60000]")
        if not _is_int(max_bytes) or not 1 <= max_bytes <= 256 * 1024 * 1024:
            raise ProtocolError("max_bytes must be an integer in [1, 256 MiB]")
        if not isinstance(tablets, list):
            raise ProtocolError("tablets must be a list")
        positions = tuple(_position(t) for t in tablets)
        return FetchRequest(replica, wait_ms, max_bytes, positions)


def _position(raw: object) -> FetchPosition:
    if not isinstance(raw, dict):
        raise ProtocolError("each tablet must be an object")
    log = raw.get("log")
    keys = ("tablet", "leader_epoch", "fetch_offset", "durable_offset", "high_watermark")
    values = [raw.get(k) for k in keys]
    if not isinstance(log, str):
        raise ProtocolError("each tablet needs a log name")
    ints = [v for v in values if isinstance(v, int) and not isinstance(v, bool)]
    if len(ints) != 5 or min(ints[0], ints[2], ints[3], ints[4]) < 0 or ints[3] > ints[2]:
        raise ProtocolError(
            "tablet, leader_epoch, fetch_offset, durable_offset and "
            "high_watermark must be integers (tablet and offsets non-negative, "
            "durable_offset ≤ fetch_offset)"
        )
    return FetchPosition(log, ints[0], ints[1], ints[2], ints[3], ints[4])


@dataclass(frozen=True, slots=True)
class Ack:
    """A follower's durable end offset of one tablet at ``leader_epoch``."""

    log: str
    tablet: int
    leader_epoch: int
    durable_offset: int


def encode_fetch(request: FetchRequest) -> bytes:
    return FETCH + json.dumps(request.to_json(), separators=(",", ":")).encode()


def encode_ack(replica: str, acks: Sequence[Ack]) -> bytes:
    body = {
        "replica": replica,
        "tablets": [[a.log, a.tablet, a.leader_epoch, a.durable_offset] for a in acks],
    }
    return ACK + json.dumps(body, separators=(",", ":")).encode()


def decode_follower_message(message: bytes) -> FetchRequest | tuple[str, list[Ack]]:
    """A fetch request, or (replica, acks). Raises ProtocolError on anything else."""
    kind, body = message[:1], message[1:]
    try:
        raw = json.loads(body)
    except ValueError as exc:
        raise ProtocolError(f"replication message is not JSON: {exc}") from None
    if kind == FETCH:
        return FetchRequest.from_json(raw)
    if kind != ACK:
        raise ProtocolError(f"unknown replication message kind {kind!r}")
    if not isinstance(raw, dict) or not isinstance(raw.get("replica"), str):
        raise ProtocolError("an ack needs the replica's id")
    acks: list[Ack] = []
    for item in raw.get("tablets", []):
        if (
            not isinstance(item, list)
            or len(item) != 4
            or not isinstance(item[0], str)
            or not all(_is_int(v) for v in item[1:])
            or item[3] < 0
        ):
            raise ProtocolError("each ack is [log, tablet, leader_epoch, durable_offset]")
        acks.append(Ack(item[0], item[1], item[2], item[3]))
    return raw["replica"], acks


@dataclass(frozen=True, slots=True)
class TabletFetchResult:
    """The leader's answer for one tablet; ``data`` holds whole batches (maybe empty)."""

    log: str
    tablet: int
    error: str | None
    leader_epoch: int
    high_watermark: int
    start_offset: int
    end_offset: int
    data: bytes | memoryview = b""

    def header(self) -> dict[str, Any]:
        return {
            "log": self.log,
            "tablet": self.tablet,
            "error": self.error,
            "leader_epoch": self.leader_epoch,
            "high_watermark": self.high_watermark,
            "start_offset": self.start_offset,
            "end_offset": self.end_offset,
            "size": len(self.data),
        }


def encode_data(results: Sequence[TabletFetchResult]) -> bytes:
    """The ``D`` message answering a fetch."""
    header = json.dumps({"tablets": [r.header() for r in results]}, separators=(",", ":")).encode()
    return b"".join(
        [DATA, _LEN.pack(len(header)), header, *(r.data for r in results if len(r.data))]
    )


def decode_data(message: bytes) -> list[TabletFetchResult]:
    """Split a ``D`` message; batch bytes are zero-copy memoryviews into ``message``.

    Raises ProtocolError if the kind or the framing is wrong.
    """
    if message[:1] != DATA:
        raise ProtocolError(f"expected a data message, got kind {message[:1]!r}")
    body = memoryview(message)[1:]
    if len(body) < _LEN.size:
        raise ProtocolError("fetch response shorter than its length prefix")
    (n,) = _LEN.unpack_from(body, 0)
    if n > MAX_HEADER_BYTES or _LEN.size + n > len(body):
        raise ProtocolError("fetch response header length is impossible")
    try:
        header = json.loads(bytes(body[_LEN.size : _LEN.size + n]))
    except ValueError as exc:
        raise ProtocolError(f"fetch response header is not JSON: {exc}") from None
    view = body
    pos = _LEN.size + n
    results: list[TabletFetchResult] = []
    for item in header.get("tablets", []):
        size = int(item["size"])
        if pos + size > len(body):
            raise ProtocolError("fetch response shorter than its header says")
        results.append(
            TabletFetchResult(
                log=item["log"],
                tablet=int(item["tablet"]),
                error=item["error"],
                leader_epoch=int(item["leader_epoch"]),
                high_watermark=int(item["high_watermark"]),
                start_offset=int(item["start_offset"]),
                end_offset=int(item["end_offset"]),
                data=view[pos : pos + size],
            )
        )
        pos += size
    if pos != len(body):
        raise ProtocolError("fetch response has trailing bytes")
    return results


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
