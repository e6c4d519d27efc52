"""Cluster config: YAML → frozen dataclasses, validated, unknown keys rejected.

The schema is the public contract (README "Configuration"; ``cluster``, ``nodes``, ``data_dir``,
``log_defaults``) plus an optional ``tuning`` section of timers that has safe defaults. Every
mistake raises :class:`ConfigError` with a one-line reason naming the offending key.

:class:`ClusterConfig` also builds each replication component's settings
(:mod:`replication.settings`), so that replication never depends on this schema.
Immutable; thread-safe.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from replication.log_settings import LogSettings, LogSettingsError
from replication.settings import (
    ControllerSettings,
    HeartbeatSettings,
    RaftMember,
    RaftSettings,
    ReplicaSettings,
)


class ConfigError(ValueError):
    """The config file is unusable; the message is one line naming the problem."""


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """One node of the cluster as the config lists it.

    ``host`` is where peers reach it unless ``advertise`` says otherwise; ``bind`` is the local
    listen address (default ``host``). Both servers listen only on ``bind``.
    """

    id: str
    host: str
    api_port: int
    raft_port: int
    bind: str | None = None
    advertise: str | None = None

    @property
    def bind_host(self) -> str:
        return self.bind or self.host

    @property
    def advertised_host(self) -> str:
        return self.advertise or self.host

    @property
    def api_address(self) -> str:
        """``host:port`` of the HTTP API as other nodes and clients reach it."""
        return f"{_url_host(self.advertised_host)}:{self.api_port}"

    @property
    def raft_address(self) -> str:
        """``host:port`` of the Raft port as the other voters reach it."""
        return f"{self.advertised_host}:{self.raft_port}"


@dataclass(frozen=True, slots=True)
class Tuning:
    """Timers of the control and data planes (optional ``tuning`` section; all ms).

    Defaults are the values measured to fail over in about a second on these machines.
    """

    heartbeat_interval_ms: int = 200
    session_timeout_ms: int = 3000
    replica_lag_max_ms: int = 3000
    fetch_wait_max_ms: int = 200
    request_timeout_ms: int = 10_000
    raft_append_entries_period_ms: int = 50
    raft_min_timeout_ms: int = 200
    raft_max_timeout_ms: int = 500
    raft_connection_timeout_ms: int = 1500
    raft_connection_retry_ms: int = 500
    raft_leader_fallback_timeout_ms: int = 1000
    raft_max_frame_bytes: int = 8 * 1024 * 1024
    raft_handshake_timeout_ms: int = 5000
    raft_max_pending_connections: int = 32
    raft_accept_retry_ms: int = 100

    def validate(self) -> None:
        for f in fields(self):
            if getattr(self, f.name) <= 0:
                raise ConfigError(f"tuning.{f.name} must be positive")
        if self.raft_min_timeout_ms <= 3 * self.raft_append_entries_period_ms:
            raise ConfigError("tuning.raft_min_timeout_ms must exceed 3 x append entries period")
        if self.raft_max_timeout_ms <= self.raft_min_timeout_ms:
            raise ConfigError("tuning.raft_max_timeout_ms must exceed raft_min_timeout_ms")
        if self.raft_connection_timeout_ms < self.raft_max_timeout_ms:
            raise ConfigError("tuning.raft_connection_timeout_ms must be ≥ raft_max_timeout_ms")
        if self.raft_max_frame_bytes < 1024 * 1024:  # legit frames reach ~180 KiB
            raise ConfigError("tuning.raft_max_frame_bytes must be at least 1 MiB (1048576)")
        if self.session_timeout_ms <= 2 * self.heartbeat_interval_ms:
            raise ConfigError("tuning.session_timeout_ms must exceed 2 x heartbeat_interval_ms")


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """The whole cluster config. Immutable; thread-safe."""

    name: str
    secret: str
    nodes: tuple[NodeSpec, ...]
    data_dir: str = "./data/{node}"
    log_defaults: LogSettings = field(default_factory=LogSettings)
    tuning: Tuning = field(default_factory=Tuning)

    def node(self, node_id: str) -> NodeSpec:
        for spec in self.nodes:
            if spec.id == node_id:
                return spec
        known = ", ".join(n.id for n in self.nodes)
        raise ConfigError(f"unknown node id {node_id!r} (the config lists {known})")

    def data_dir_for(self, node_id: str, override: str | None = None) -> Path:
        return Path((override or self.data_dir).replace("{node}", node_id))

    # The settings of each replication component, taken from this config.

    def raft_settings(self) -> RaftSettings:
        t = self.tuning
        return RaftSettings(
            cluster_name=self.name,
            secret=self.secret,
            members=tuple(
                RaftMember(
                    id=n.id,
                    api_address=n.api_address,
                    raft_address=n.raft_address,
                    raft_bind=f"{n.bind_host}:{n.raft_port}",
                )
                for n in self.nodes
            ),
            append_entries_period_ms=t.raft_append_entries_period_ms,
            min_timeout_ms=t.raft_min_timeout_ms,
            max_timeout_ms=t.raft_max_timeout_ms,
            connection_timeout_ms=t.raft_connection_timeout_ms,
            connection_retry_ms=t.raft_connection_retry_ms,
            leader_fallback_timeout_ms=t.raft_leader_fallback_timeout_ms,
            max_frame_bytes=t.raft_max_frame_bytes,
            handshake_timeout_ms=t.raft_handshake_timeout_ms,
            max_pending_connections=t.raft_max_pending_connections,
            accept_retry_ms=t.raft_accept_retry_ms,
        )

    def replica_settings(self) -> ReplicaSettings:
        return ReplicaSettings(
            log_defaults=self.log_defaults,
            fetch_wait_max_ms=self.tuning.fetch_wait_max_ms,
            request_timeout_ms=self.tuning.request_timeout_ms,
        )

    def controller_settings(self) -> ControllerSettings:
        return ControllerSettings(
            heartbeat_interval_ms=self.tuning.heartbeat_interval_ms,
            session_timeout_ms=self.tuning.session_timeout_ms,
        )

    def heartbeat_settings(self) -> HeartbeatSettings:
        return HeartbeatSettings(
            heartbeat_interval_ms=self.tuning.heartbeat_interval_ms,
            session_timeout_ms=self.tuning.session_timeout_ms,
            api_addresses={n.id: n.api_address for n in self.nodes},
        )


_TOP_KEYS = {"cluster", "nodes", "data_dir", "log_defaults", "tuning"}
_CLUSTER_KEYS = {"name", "secret", "secret_env"}
_NODE_KEYS = {"id", "host", "api_port", "raft_port", "bind", "advertise"}


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> ClusterConfig:
    """Read and validate a config file. Raises ConfigError (one line) on any problem."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "syntax error"
        raise ConfigError(f"config {path} is not valid YAML: {first}") from None
    return parse_config(raw, os.environ if env is None else env)


def parse_config(raw: object, env: Mapping[str, str]) -> ClusterConfig:
    """Validate an already-parsed YAML document; see :func:`load_config`."""
    top = _mapping(raw, "config")
    _reject_unknown(top, _TOP_KEYS, "")
    cluster = _mapping(top.get("cluster"), "cluster")
    _reject_unknown(cluster, _CLUSTER_KEYS, "cluster.")
    name = _string(cluster.get("name", "tabletlog"), "cluster.name")
    secret = _secret(cluster, env)
    nodes = _nodes(top.get("nodes"))
    data_dir = _string(top.get("data_dir", "./data/{node}"), "data_dir")
    try:
        defaults = LogSettings().merged(_mapping(top.get("log_defaults", {}), "log_defaults"))
    except LogSettingsError as exc:
        raise ConfigError(str(exc)) from None
    tuning = _tuning(_mapping(top.get("tuning", {}), "tuning"))
    return ClusterConfig(name, secret, nodes, data_dir, defaults, tuning)


def _secret(cluster: Mapping[str, Any], env: Mapping[str, str]) -> str:
    if "secret" in cluster and "secret_env" in cluster:
        raise ConfigError("cluster.secret and cluster.secret_env are exclusive: give one")
    if "secret_env" in cluster:
        var = _string(cluster["secret_env"], "cluster.secret_env")
        secret = env.get(var, "")
        if not secret:
            raise ConfigError(f"cluster.secret_env names {var}, which is unset or empty")
        return secret
    if "secret" not in cluster:
        raise ConfigError("missing cluster.secret (or cluster.secret_env): the cluster needs one")
    secret = _string(cluster["secret"], "cluster.secret")
    if len(secret) < 8:
        raise ConfigError("cluster.secret must be at least 8 characters")
    return secret


def _nodes(raw: object) -> tuple[NodeSpec, ...]:
    if not isinstance(raw, list) or not raw:
        raise ConfigError("nodes must be a non-empty list")
    specs: list[NodeSpec] = []
    for i, item in enumerate(raw):
        where = f"nodes[{i}]"
        entry = _mapping(item, where)
        _reject_unknown(entry, _NODE_KEYS, f"{where}.")
        for key in ("id", "host", "api_port", "raft_port"):
            if key not in entry:
                raise ConfigError(f"{where} is missing {key}")
        node_id = _string(entry["id"], f"{where}.id")
        if not node_id.replace("-", "").replace("_", "").isalnum() or len(node_id) > 64:
            raise ConfigError(f"{where}.id must be letters, digits, '-' or '_' (≤ 64)")
        specs.append(
            NodeSpec(
                id=node_id,
                host=_string(entry["host"], f"{where}.host"),
                api_port=_port(entry["api_port"], f"{where}.api_port"),
                raft_port=_port(entry["raft_port"], f"{where}.raft_port"),
                bind=_optional_string(entry.get("bind"), f"{where}.bind"),
                advertise=_optional_string(entry.get("advertise"), f"{where}.advertise"),
            )
        )
    _check_unique(specs)
    return tuple(specs)


def _check_unique(specs: list[NodeSpec]) -> None:
    ids: set[str] = set()
    endpoints: set[tuple[str, int]] = set()
    for spec in specs:
        if spec.id in ids:
            raise ConfigError(f"duplicate node id {spec.id!r}")
        ids.add(spec.id)
        # Nodes on one machine share its ports; nodes are told apart by the address others
        # reach them at (several machines may all bind 0.0.0.0 on the same ports).
        for port in (spec.api_port, spec.raft_port):
            endpoint = (spec.advertised_host, port)
            if endpoint in endpoints:
                raise ConfigError(
                    f"duplicate port {port} on {spec.advertised_host} (node {spec.id})"
                )
            endpoints.add(endpoint)


def _tuning(raw: Mapping[str, Any]) -> Tuning:
    known = {f.name for f in fields(Tuning)}
    _reject_unknown(raw, known, "tuning.")
    values = {k: _int(v, f"tuning.{k}") for k, v in raw.items()}
    tuning = Tuning(**values)
    tuning.validate()
    return tuning


def _int(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where} must be an integer")
    return value


def _port(value: object, where: str) -> int:
    port = _int(value, where)
    if not 1 <= port <= 65535:
        raise ConfigError(f"{where} must be a port number (1-65535)")
    return port


def _string(value: object, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where} must be a non-empty string")
    return value


def _optional_string(value: object, where: str) -> str | None:
    return None if value is None else _string(value, where)


def _mapping(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a mapping")
    return value


def _reject_unknown(entry: Mapping[str, Any], known: set[str], prefix: str) -> None:
    unknown = sorted(str(k) for k in set(entry) - known)
    if unknown:
        raise ConfigError(f"unknown key {prefix}{unknown[0]!r} in config")


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
