"""The one table of tabletlog's error codes, shared by the nodes and the client.

A code is the ``error`` string of a node's JSON error answer (``{"error", "message", ...}``),
the per-tablet ``error`` of a replication fetch answer, a metadata command's rejection code, or
the ``code`` of an error the client raises itself. Each code is listed once, with:

- ``status``: the HTTP status a node answers with when it raises the code; None for a code that
  is never the ``error`` of an HTTP answer (a fetch or map code, or one the client raises).
- ``retriable``: the same request may succeed later (after a backoff, and after a metadata
  refresh when ``refresh_metadata`` is set).
- ``outcome_unknown``: a write may or may not have been applied; retrying it is safe only with
  the idempotent producer.
- ``refresh_metadata``: the caller's idea of who leads the tablet (or which nodes exist) is
  probably stale; refresh it before retrying.

Every exception class of tabletlog declares only its ``code`` and takes the flags from here
(:class:`wire.errors.TabletLogError` checks this when the class is defined); the node's HTTP
layer takes statuses from here; the client's error classes are derived from it. The README's
HTTP API section (and docs/openapi.yaml) name the codes and statuses users rely on: never change
the status or meaning of a code that is sent, add new codes instead.

Immutable after import; thread-safe.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True, slots=True)
class ErrorCode:
    """One code of the table; see the module docstring for what each field means."""

    code: str
    status: int | None
    meaning: str
    retriable: bool = False
    outcome_unknown: bool = False
    refresh_metadata: bool = False


# Flag sets many codes share. _UNAVAILABLE: a node (or what it depends on) is unavailable, so
# retry, possibly elsewhere; a write sent there may or may not have been applied.
_RETRY: dict[str, bool] = {"retriable": True}
_REFRESH: dict[str, bool] = {"retriable": True, "refresh_metadata": True}
_UNAVAILABLE: dict[str, bool] = {**_REFRESH, "outcome_unknown": True}

_TABLE: tuple[ErrorCode, ...] = (
    # --------------------------------------------------------- the caller's mistakes (4xx)
    ErrorCode("bad_request", 400, "the request is malformed or impossible"),
    ErrorCode("corrupt_batch", 400, "a batch fails its length or checksum check"),
    ErrorCode("offset_out_of_range", 400, "an offset outside [start_offset, end_offset)"),
    ErrorCode("unauthorized", 401, "a valid token (or the cluster secret) is required"),
    ErrorCode(
        "unknown_producer",
        403,
        "batches carry a producer id without its valid token: init one with POST /v1/producers",
    ),
    ErrorCode("not_found", 404, "no such log, tablet, group or node"),
    ErrorCode("already_exists", 409, "a log of that name exists already"),
    ErrorCode("out_of_order_sequence", 409, "an idempotent producer's sequence has a gap"),
    ErrorCode("invalid_producer_epoch", 409, "a newer session of that producer id exists"),
    ErrorCode("stale_epoch", 409, "a leader epoch older than the current one", **_REFRESH),
    ErrorCode("stale_version", 409, "a tablet version older than the map's (compare-and-set)"),
    ErrorCode("command_rejected", 409, "the metadata map refused the command; see `reason`"),
    ErrorCode("payload_too_large", 413, "the request or a batch is bigger than a node accepts"),
    ErrorCode("not_leader", 421, "this node does not lead the tablet; see `leader`", **_REFRESH),
    # --------------------------------------------------------- conditions that pass (503)
    # The _UNAVAILABLE ones count a write as unknown even where the node applied none of it
    # (disk_full, log_closed): the answer may come through a node that forwarded the write,
    # and the client has always treated every such 503 alike.
    ErrorCode("not_enough_replicas", 503, "fewer in-sync replicas than required", **_RETRY),
    ErrorCode("no_leader", 503, "the tablet has no leader right now", **_REFRESH),
    ErrorCode(
        "timeout",
        503,
        "not acknowledged in time: the write may or may not have committed",
        retriable=True,
        outcome_unknown=True,
    ),
    ErrorCode("not_controller", 503, "this node is not the controller", **_REFRESH),
    ErrorCode("metadata_unavailable", 503, "the metadata map cannot take or serve it", **_REFRESH),
    ErrorCode(
        "unknown_leader_epoch", 503, "the caller is ahead of the leader's metadata", **_UNAVAILABLE
    ),
    ErrorCode("peer_unreachable", 503, "another node could not be reached", **_UNAVAILABLE),
    ErrorCode(
        "peer_error", 503, "another node answered an internal call with an error", **_UNAVAILABLE
    ),
    ErrorCode(
        "log_closed", 503, "the tablet's log was closed (deleted, node stopping)", **_UNAVAILABLE
    ),
    ErrorCode(
        "corrupt_segment", 503, "this replica holds corrupt data and re-syncs", **_UNAVAILABLE
    ),
    ErrorCode("disk_full", 503, "the node's disk is full; nothing was appended", **_UNAVAILABLE),
    ErrorCode(
        "not_ready",
        503,
        "the tablet's leader is restoring its high watermark (just elected or restarted)",
        **_UNAVAILABLE,  # reads only; the client treats it as any unavailable node
    ),
    ErrorCode("log_truncated", 503, "the log was truncated under a waiting append", **_UNAVAILABLE),
    # --------------------------------------------------------- bugs and internal states (500)
    ErrorCode("internal", 500, "a bug; see the node's log"),
    ErrorCode("replication_error", 500, "an error of the replication layer without a code"),
    ErrorCode("non_contiguous_append", 500, "a follower append does not start at the end offset"),
    ErrorCode("duplicate_sequence", 500, "a resent batch the log already holds"),
    ErrorCode("stale_leader_epoch", 500, "a leader append with an epoch older than the log's"),
    ErrorCode("flush_failed", 500, "an fsync failed; the log must be reopened"),
    # --------------------------------------------------------- per-tablet codes of a fetch
    ErrorCode(
        "fenced_leader_epoch", None, "the follower's epoch is older than the leader's", **_REFRESH
    ),
    ErrorCode("not_a_replica", None, "the follower is not a replica of the tablet", **_REFRESH),
    ErrorCode("storage_error", None, "the leader could not read its log", **_RETRY),
    # --------------------------------------------------------- metadata map rejections
    # (surfaced as the `reason` of command_rejected, or as the API code they map to)
    ErrorCode("bad_command", None, "a command field has the wrong type or range"),
    ErrorCode("invalid", None, "a command is well-formed but impossible"),
    ErrorCode("unknown_node", None, "a command names a node the map does not hold"),
    ErrorCode("stale_term", None, "a controller term older than the map's"),
    ErrorCode("unclaimed_term", None, "a controller term that was never claimed"),
    ErrorCode("stale_incarnation", None, "a node incarnation older than the map's"),
    ErrorCode("ineligible_replica", None, "a replica that may not join the ISR or lead"),
    ErrorCode("unsupported_version", None, "a command of an encoding version this node lacks"),
    ErrorCode("unknown_op", None, "a command of an operation this node does not know"),
    # --------------------------------------------------------- raised by the client itself
    ErrorCode("client_error", None, "the base of the client's own errors"),
    ErrorCode("unavailable", None, "a 5xx answer without a code the client knows", **_UNAVAILABLE),
    ErrorCode(
        "connection_failed",
        None,
        "a node could not be reached or dropped the connection",
        **_UNAVAILABLE,
    ),
    ErrorCode("request_timeout", None, "no answer within the client's timeout", **_UNAVAILABLE),
    ErrorCode("cluster_unreachable", None, "no bootstrap or known node answered", **_UNAVAILABLE),
    ErrorCode("delivery_timeout", None, "the producer retried a batch until its deadline"),
    ErrorCode("producer_closed", None, "send after close, or records dropped by an abort"),
    ErrorCode("protocol_error", None, "a node's answer cannot be parsed"),
)


def _by_code(table: tuple[ErrorCode, ...]) -> Mapping[str, ErrorCode]:
    by_code: dict[str, ErrorCode] = {}
    for entry in table:
        if entry.code in by_code:
            raise ValueError(f"error code {entry.code!r} is listed twice")
        by_code[entry.code] = entry
    return MappingProxyType(by_code)


ERROR_CODES: Mapping[str, ErrorCode] = _by_code(_TABLE)
"""Every code of tabletlog, by its string."""


def error_code(code: str) -> ErrorCode:
    """The table entry of ``code``; KeyError for a code that is not in the table."""
    return ERROR_CODES[code]


def http_status(code: str) -> int:
    """The HTTP status a node answers ``code`` with: 500 for a code not sent over HTTP."""
    entry = ERROR_CODES.get(code)
    return 500 if entry is None or entry.status is None else entry.status
