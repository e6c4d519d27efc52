"""Errors the client raises: one class per server error code, plus the client's own failures.

Behaviour lives in class attributes (the aiokafka idiom), so retry loops ask the error instead of
matching codes. Each class declares only its ``code``; the flags are that code's entry in the
one table the nodes use too (:mod:`wire.error_codes`), so client and server cannot disagree:

- ``retriable``: the same request may succeed later unchanged (after a backoff).
- ``refresh_metadata``: the client's idea of who leads the tablet (or which nodes exist) is
  probably stale; refresh it before retrying.
- ``outcome_unknown``: a write may or may not have been applied (a timeout after the request was
  sent). Retrying a write is safe only with the idempotent producer, which resends the same
  sequence numbers so the leader drops the duplicate.

``error_from_response`` is the one place that maps an HTTP error answer to a class: the class
declared for the answer's code, else the class ``_RAISED_AS`` names for it, else one chosen by
the HTTP status (see :func:`client_class_for`). Immutable once raised; thread-safe.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from wire.error_codes import error_code
from wire.errors import TabletLogError


class ClientError(TabletLogError):
    """Base of every error the client raises on purpose.

    ``status`` is the HTTP status when a node answered, ``body`` its decoded JSON body (or an empty
    mapping), ``address`` the node that answered or failed.
    """

    code = "client_error"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        body: Mapping[str, Any] | None = None,
        address: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.body: Mapping[str, Any] = body or {}
        self.address = address


# ---------------------------------------------------------------------------------------------
# errors a node answers with (the `error` field of the JSON body)


class ServerError(ClientError):
    """A node answered with an error; ``code`` is the server's error code."""

    code = "internal"


class BadRequest(ServerError):
    """The request was malformed (a bug in the caller or client); retrying cannot help."""

    code = "bad_request"


class CorruptBatchError(ServerError):
    """The leader found a checksum or length mismatch in a batch the client built."""

    code = "corrupt_batch"


class NotFound(ServerError):
    """The log, tablet, group or node does not exist."""

    code = "not_found"


class AlreadyExists(ServerError):
    """A log with that name already exists."""

    code = "already_exists"


class OffsetOutOfRange(ServerError):
    """A read asked for an offset outside ``[start_offset, end_offset]`` of the tablet.

    Usually retention deleted the records; restart from ``start_offset`` (or the end).
    """

    code = "offset_out_of_range"

    @property
    def start_offset(self) -> int | None:
        """First readable offset, when the node said."""
        return _int_field(self.body, "start_offset")

    @property
    def end_offset(self) -> int | None:
        """Offset after the last record, when the node said."""
        return _int_field(self.body, "end_offset")


class PayloadTooLarge(ServerError):
    """The request or a single batch is bigger than the node accepts."""

    code = "payload_too_large"


class OutOfOrderSequence(ServerError):
    """The leader saw a sequence gap for this producer: earlier records were lost or reordered.

    The producer retries a batch that got it while an earlier batch of the tablet was unsettled
    (a consequence of that one); for a batch sent alone it fails the batch and starts a new
    producer session for the tablet (see ``client.sender``).
    """

    code = "out_of_order_sequence"


class InvalidProducerEpoch(ServerError):
    """A newer producer session with the same id exists (this one is a zombie)."""

    code = "invalid_producer_epoch"


class UnknownProducer(ServerError):
    """The batches' producer id came without its valid token (the cluster did not issue it, or
    its secret changed): nothing was written. The producer inits a new id and renumbers."""

    code = "unknown_producer"


class NotEnoughReplicas(ServerError):
    """Fewer in-sync replicas than ``min_insync_replicas``: nothing was written; retry later."""

    code = "not_enough_replicas"


class NoLeader(ServerError):
    """The tablet (or the metadata) has no leader right now, e.g. during a fail-over."""

    code = "no_leader"


class NotLeader(ServerError):
    """The node asked is not the tablet's leader (sent with ``X-Tabletlog-No-Forward: 1``).

    ``leader_address`` is the node's hint where the leader is, if it knows one.
    """

    code = "not_leader"

    @property
    def leader(self) -> str | None:
        value = self.body.get("leader")
        return value if isinstance(value, str) else None

    @property
    def leader_address(self) -> str | None:
        value = self.body.get("leader_address")
        return value if isinstance(value, str) and value else None


class StaleEpoch(ServerError):
    """The request carried a leader epoch older than the node's: metadata is out of date."""

    code = "stale_epoch"


class ServerTimeout(ServerError):
    """The node gave up waiting (e.g. for replicas to acknowledge): the write may have happened."""

    code = "timeout"


class Unavailable(ServerError):
    """A 5xx answer without a code the client knows (a proxy, a restarting node): retry."""

    code = "unavailable"


# ---------------------------------------------------------------------------------------------
# failures on the client's side


class ConnectionFailed(ClientError):
    """A node could not be reached or dropped the connection.

    ``sent`` is False when the connection was never established, so the request certainly did
    not reach the node; otherwise the outcome of a write is unknown.
    """

    code = "connection_failed"

    def __init__(self, message: str, *, address: str | None = None, sent: bool = True) -> None:
        super().__init__(message, address=address)
        self.sent = sent


class RequestTimeout(ConnectionFailed):
    """No answer within the client's request timeout; the outcome of a write is unknown."""

    code = "request_timeout"


class ClusterUnreachable(ConnectionFailed):
    """None of the bootstrap or known nodes answered. The CLI exits with status 3 for this."""

    code = "cluster_unreachable"


class DeliveryTimeout(ClientError):
    """The producer retried a batch until ``delivery_timeout_s`` ran out.

    ``last_error`` is the error of the final attempt. With ``outcome_unknown`` on it, the records
    may have been written.
    """

    code = "delivery_timeout"

    def __init__(self, message: str, last_error: ClientError | None) -> None:
        super().__init__(message)
        self.last_error = last_error


class ProducerClosed(ClientError):
    """``send`` after ``close()``, or records still queued when the producer was aborted."""

    code = "producer_closed"


class ProtocolError(ClientError):
    """A node answered something this client cannot parse (a version mismatch or a bug)."""

    code = "protocol_error"


def _subclasses(cls: type[ServerError]) -> list[type[ServerError]]:
    found: list[type[ServerError]] = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


# The class of every code a node sends that has a class of its own.
_BY_CODE: Mapping[str, type[ServerError]] = MappingProxyType(
    {cls.code: cls for cls in _subclasses(ServerError) if error_code(cls.code).status is not None}
)
# Codes a node sends that have no class of their own and are raised as another code's class
# (whose flags the table gives them too), where the class for their HTTP status would not fit.
_RAISED_AS: Mapping[str, type[ServerError]] = MappingProxyType(
    {"not_controller": NoLeader, "metadata_unavailable": NoLeader}
)


def client_class_for(code: str | None, status: int) -> type[ServerError]:
    """The class raised for an error answer with ``code`` (None: no code) and ``status``."""
    if code is not None:
        cls = _BY_CODE.get(code) or _RAISED_AS.get(code)
        if cls is not None:
            return cls
    return _class_for_status(status)


def error_from_response(status: int, body: bytes, *, address: str | None = None) -> ServerError:
    """The error for a non-2xx answer: by the body's ``error`` code, else by the status."""
    parsed = _parse_body(body)
    code = parsed.get("error")
    message = parsed.get("message")
    text = message if isinstance(message, str) and message else f"HTTP {status}"
    cls = client_class_for(code if isinstance(code, str) else None, status)
    prefix = code if isinstance(code, str) else cls.code
    return cls(f"{prefix}: {text}", status=status, body=parsed, address=address)


def _class_for_status(status: int) -> type[ServerError]:
    if status == 404:
        return NotFound
    if status == 409:
        return AlreadyExists
    if status == 413:
        return PayloadTooLarge
    if status == 421:
        return NotLeader
    if status in (502, 503, 504):
        return Unavailable
    if 400 <= status < 500:
        return BadRequest
    return ServerError


def _parse_body(body: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(body) if body else {}
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _int_field(body: Mapping[str, Any], name: str) -> int | None:
    value = body.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else None
