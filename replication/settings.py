"""The settings each replication component runs with, one frozen dataclass per component.

``node.config`` builds them from the cluster config (YAML); the components read nothing
else, so replication never depends on the config file's schema. Times are milliseconds, as in
the config's ``tuning`` section they come from. Immutable; thread-safe.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from replication.log_settings import LogSettings

__all__ = [
    "ControllerSettings",
    "HeartbeatSettings",
    "RaftMember",
    "RaftSettings",
    "ReplicaSettings",
]


@dataclass(frozen=True, slots=True)
class RaftMember:
    """One node as the metadata Raft group knows it; addresses are ``host:port``."""

    id: str
    api_address: str
    """Where other nodes and clients reach its HTTP API (the map's initial address)."""
    raft_address: str
    """Where the other voters reach its Raft port."""
    raft_bind: str
    """The local address its Raft port listens on."""


@dataclass(frozen=True, slots=True)
class RaftSettings:
    """What :class:`replication.raft_state.RaftState` and the metadata store run with."""

    cluster_name: str
    secret: str
    members: tuple[RaftMember, ...]
    """Every node of the cluster; the default voters, and the nodes of the initial map."""
    append_entries_period_ms: int
    min_timeout_ms: int
    max_timeout_ms: int
    connection_timeout_ms: int
    connection_retry_ms: int
    leader_fallback_timeout_ms: int
    max_frame_bytes: int = 8 * 1024 * 1024
    """Largest Raft frame a connection accepts; checked from its length prefix before it is
    buffered (``replication.raft_transport``)."""
    handshake_timeout_ms: int = 5000
    """How long an accepted Raft connection may take to authenticate."""
    max_pending_connections: int = 32
    """Accepted Raft connections still authenticating kept at once (oldest closed first)."""
    accept_retry_ms: int = 100
    """Pause of the Raft listener after an accept error (EMFILE ...) before it retries."""

    def member(self, node_id: str) -> RaftMember:
        """The member ``node_id``; raises ValueError for a node the cluster does not list."""
        for member in self.members:
            if member.id == node_id:
                return member
        known = ", ".join(m.id for m in self.members)
        raise ValueError(f"unknown node id {node_id!r} (the config lists {known})")

    def api_addresses(self) -> dict[str, str]:
        """``{node id: API address}`` of every member: the nodes of the initial map."""
        return {m.id: m.api_address for m in self.members}


@dataclass(frozen=True, slots=True)
class ReplicaSettings:
    """What :class:`replication.replica_manager.ReplicaManager` runs with."""

    log_defaults: LogSettings
    """Merged under each log's recorded settings (fills settings an older map entry lacks)."""
    fetch_wait_max_ms: int
    request_timeout_ms: int


@dataclass(frozen=True, slots=True)
class ControllerSettings:
    """What :class:`replication.controller.Controller` judges liveness by."""

    heartbeat_interval_ms: int
    session_timeout_ms: int


@dataclass(frozen=True, slots=True)
class HeartbeatSettings:
    """What :class:`replication.heartbeat.Heartbeater` runs with."""

    heartbeat_interval_ms: int
    session_timeout_ms: int
    api_addresses: Mapping[str, str]
    """``{node id: API address}`` from the config, for a controller the map has no address of."""
