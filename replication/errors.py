"""Errors of the metadata map, the controller and data replication, raised on purpose.

Every class declares only its ``code`` (the JSON ``error`` string of the HTTP API where one
exists); ``retriable`` and the other flags come from that code's entry in
:mod:`wire.error_codes`. Only the HTTP layer turns them into responses. This module is shared:
add new classes at the end, never change a code. Thread-safe (plain exception classes).
"""

from __future__ import annotations

from wire.errors import TabletLogError


class ReplicationError(TabletLogError):
    """Base for errors of the replication layer (metadata, controller, data replication)."""

    code = "replication_error"


class NotController(ReplicationError):
    """This node is not the active controller; retry against ``controller`` (None: unknown yet)."""

    code = "not_controller"

    def __init__(self, controller: str | None) -> None:
        where = f"node {controller} is" if controller else "no node is known to be"
        super().__init__(f"this node is not the controller; {where} the controller")
        self.controller = controller


class MetadataTimeout(ReplicationError):
    """A metadata command did not complete in time: it may or may not have been applied.

    Commands are idempotent or compare-and-set, so retrying the same command is safe; read the
    applied map before acting on the assumption that it did or did not happen.
    """

    code = "timeout"


class MetadataUnavailable(ReplicationError):
    """The metadata map could not take the command (no Raft leader, queue full, discarded).

    The command was not applied; retry later.
    """

    code = "metadata_unavailable"


class StaleEpoch(ReplicationError):
    """A compare-and-set named an older leader epoch than the map holds: refresh and re-decide.

    A tablet leader that receives this has been deposed and must stop acting as leader.
    """

    code = "stale_epoch"


class StaleVersion(ReplicationError):
    """A compare-and-set named an older tablet version than the map holds: refresh and retry."""

    code = "stale_version"


class NotLeader(ReplicationError):
    """This node does not lead ``tablet``; ``leader_hint`` is the leader the map names, if any."""

    code = "not_leader"

    def __init__(self, tablet: str, leader_hint: str | None) -> None:
        hint = f"; the leader is {leader_hint}" if leader_hint else ""
        super().__init__(f"this node does not lead tablet {tablet}{hint}")
        self.tablet = tablet
        self.leader_hint = leader_hint


class NotEnoughReplicas(ReplicationError):
    """Fewer in-sync replicas than ``min_insync_replicas``: the write was not accepted."""

    code = "not_enough_replicas"


class NoLeader(ReplicationError):
    """The tablet has no leader right now (no live in-sync replica); retry later."""

    code = "no_leader"


class AlreadyExists(ReplicationError):
    """A log of that name exists already (with different settings or placement)."""

    code = "already_exists"


class UnknownLog(ReplicationError):
    """No log of that name exists (or the tablet index is out of range)."""

    code = "not_found"


class CommandRejected(ReplicationError):
    """The metadata map recorded the command as a no-op; ``reason`` is the map's error code.

    Raised for rejections that have no more specific class (e.g. ``stale_term``,
    ``ineligible_replica``). The map is unchanged by the command.
    """

    code = "command_rejected"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.detail = message


class InvalidRequest(ReplicationError):
    """The request is malformed or impossible (bad field types, more replicas than nodes)."""

    code = "bad_request"


class PeerUnreachable(ReplicationError):
    """Another node could not be reached over HTTP (refused, reset, timed out).

    ``refused`` is True when the connection was actively refused, which on loopback or a live
    host means no process listens there: the strongest evidence short of a session timeout that
    the node is down. The request may have been delivered if ``refused`` is False.
    """

    code = "peer_unreachable"

    def __init__(self, address: str, reason: str, *, refused: bool) -> None:
        super().__init__(f"cannot reach {address}: {reason}")
        self.address = address
        self.refused = refused


class ReplicationTimeout(ReplicationError):
    """A write was not acknowledged in time, or leadership moved before it was.

    The outcome is unknown: the records may or may not be committed. Retry with an idempotent
    producer, or read back to find out.
    """

    code = "timeout"


class PeerError(ReplicationError):
    """Another node answered an internal call with an error this node has no class for."""

    code = "peer_error"

    def __init__(self, address: str, status: int, error: str, message: str) -> None:
        super().__init__(f"{address} answered {status} {error}: {message}")
        self.address = address
        self.status = status
        self.error = error


class HighWatermarkNotRestored(ReplicationError):
    """The tablet's leader (just elected, or restarted) has not yet heard from every in-sync
    replica, so its high watermark may still lag what an earlier leader exposed; a read answers
    this (503, retriable) rather than a high watermark that moved backwards."""

    code = "not_ready"
