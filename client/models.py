"""What the client returns: frozen dataclasses parsed from the JSON answers of docs/openapi.yaml.

Each type keeps the server's field names and offers ``to_dict()`` that gives back the JSON shape
(the CLI's ``--json`` output is exactly that). Parsing is lenient about extra fields (the API may
grow) and strict about the documented ones (a missing one raises ProtocolError). Immutable;
thread-safe.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from client.errors import ProtocolError
from wire.batch import Record

__all__ = [
    "ClusterInfo",
    "LogDescription",
    "LogStatus",
    "NodeInfo",
    "ProducerIdentity",
    "Record",
    "RecordMetadata",
    "Status",
    "TabletInfo",
]


class RecordMetadata(NamedTuple):
    """Where a produced record landed; unpacks as ``(tablet, offset)``.

    ``offset`` is -1 with ``acks=0`` (the leader does not say).
    """

    tablet: int
    offset: int


@dataclass(frozen=True, slots=True)
class ProducerIdentity:
    """``POST /v1/producers``: an idempotent-producer id issued by the cluster, its epoch and
    the token that proves it on every produce request (``X-Tabletlog-Producer-Token``)."""

    producer_id: int
    producer_epoch: int
    producer_token: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "producer_id": self.producer_id,
            "producer_epoch": self.producer_epoch,
            "producer_token": self.producer_token,
        }

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> ProducerIdentity:
        producer_id, epoch = raw.get("producer_id"), raw.get("producer_epoch")
        token = raw.get("producer_token")
        if (
            not isinstance(producer_id, int)
            or isinstance(producer_id, bool)
            or not 0 < producer_id < 1 << 63
            or not isinstance(epoch, int)
            or isinstance(epoch, bool)
            or not 0 <= epoch < 1 << 15
            or not isinstance(token, str)
            or not token
        ):
            raise ProtocolError(f"not a producer identity: {dict(raw)!r}")
        return cls(producer_id, epoch, token)


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """A cluster member as ``GET /v1/cluster`` lists it."""

    id: str
    address: str
    alive: bool

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "address": self.address, "alive": self.alive}

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> NodeInfo:
        return cls(
            id=_str(raw, "id"),
            address=_str(raw, "address"),
            alive=bool(raw.get("alive", True)),
        )


@dataclass(frozen=True, slots=True)
class ClusterInfo:
    """``GET /v1/cluster``: the cluster name, the metadata controller (or None) and the nodes."""

    cluster: str
    controller: str | None
    nodes: tuple[NodeInfo, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "controller": self.controller,
            "nodes": [n.to_dict() for n in self.nodes],
        }

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> ClusterInfo:
        return cls(
            cluster=str(raw.get("cluster", "")),
            controller=_opt_str(raw, "controller"),
            nodes=tuple(NodeInfo.parse(n) for n in _list(raw, "nodes")),
        )


@dataclass(frozen=True, slots=True)
class TabletInfo:
    """One tablet's replication state.

    Offsets follow the project's convention: ``high_watermark`` and ``end_offset`` are exclusive
    (offsets below the high watermark are committed). ``end_offset`` and ``replica_lag`` (records
    each replica is behind the leader's end; None when the leader does not know, e.g. for a
    replica that is down) come only from ``GET /v1/status``.
    """

    tablet: int
    leader: str | None
    leader_epoch: int
    replicas: tuple[str, ...]
    isr: tuple[str, ...]
    start_offset: int
    high_watermark: int
    end_offset: int | None = None
    replica_lag: Mapping[str, int | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "tablet": self.tablet,
            "leader": self.leader,
            "leader_epoch": self.leader_epoch,
            "replicas": list(self.replicas),
            "isr": list(self.isr),
            "start_offset": self.start_offset,
            "high_watermark": self.high_watermark,
        }
        if self.end_offset is not None:
            out["end_offset"] = self.end_offset
        if self.replica_lag:
            out["replica_lag"] = dict(self.replica_lag)
        return out

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> TabletInfo:
        lag = raw.get("replica_lag")
        return cls(
            tablet=_int(raw, "tablet"),
            leader=_opt_str(raw, "leader"),
            leader_epoch=_opt_int(raw.get("leader_epoch")) or 0,
            replicas=tuple(str(r) for r in raw.get("replicas") or ()),
            isr=tuple(str(r) for r in raw.get("isr") or ()),
            start_offset=_opt_int(raw.get("start_offset")) or 0,
            high_watermark=_opt_int(raw.get("high_watermark")) or 0,
            end_offset=_opt_int(raw.get("end_offset")),
            replica_lag={str(k): _opt_int(v) for k, v in lag.items()}
            if isinstance(lag, dict)
            else {},
        )


@dataclass(frozen=True, slots=True)
class LogDescription:
    """``GET /v1/logs/{log}``: settings and per-tablet state, tablets ordered by index."""

    name: str
    config: Mapping[str, Any]
    tablets: tuple[TabletInfo, ...]

    @property
    def tablet_count(self) -> int:
        return len(self.tablets)

    def tablet(self, index: int) -> TabletInfo:
        """The tablet with that index; raises IndexError if the log has no such tablet."""
        for info in self.tablets:
            if info.tablet == index:
                return info
        raise IndexError(f"log {self.name!r} has no tablet {index}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "config": dict(self.config),
            "tablets": [t.to_dict() for t in self.tablets],
        }

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> LogDescription:
        tablets = sorted(
            (TabletInfo.parse(t) for t in _list(raw, "tablets")), key=lambda t: t.tablet
        )
        config = raw.get("config") or {}
        return cls(
            name=_str(raw, "name"),
            config=dict(config) if isinstance(config, dict) else {},
            tablets=tuple(tablets),
        )


@dataclass(frozen=True, slots=True)
class LogStatus:
    """One log's tablets in ``GET /v1/status``."""

    name: str
    tablets: tuple[TabletInfo, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "tablets": [t.to_dict() for t in self.tablets]}


@dataclass(frozen=True, slots=True)
class Status:
    """``GET /v1/status`` (or the same assembled from ``/v1/cluster`` and ``/v1/logs/{log}``)."""

    cluster: str
    controller: str | None
    nodes: tuple[NodeInfo, ...]
    logs: tuple[LogStatus, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "controller": self.controller,
            "nodes": [n.to_dict() for n in self.nodes],
            "logs": [log.to_dict() for log in self.logs],
        }

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Status:
        logs = []
        for entry in _list(raw, "logs"):
            if not isinstance(entry, dict):
                raise ProtocolError("status lists a log that is not an object")
            tablets = sorted(
                (TabletInfo.parse(t) for t in _list(entry, "tablets")), key=lambda t: t.tablet
            )
            logs.append(LogStatus(_str(entry, "name"), tuple(tablets)))
        return cls(
            cluster=str(raw.get("cluster", "")),
            controller=_opt_str(raw, "controller"),
            nodes=tuple(NodeInfo.parse(n) for n in _list(raw, "nodes")),
            logs=tuple(logs),
        )


def _str(raw: Mapping[str, Any], name: str) -> str:
    value = raw.get(name)
    if not isinstance(value, str):
        raise ProtocolError(f"expected a string field {name!r} in the node's answer")
    return value


def _opt_str(raw: Mapping[str, Any], name: str) -> str | None:
    value = raw.get(name)
    return value if isinstance(value, str) else None


def _int(raw: Mapping[str, Any], name: str) -> int:
    value = raw.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ProtocolError(f"expected an integer field {name!r} in the node's answer")
    return value


def _opt_int(value: object) -> int | None:
    """An integer field that may be absent or null (the API may not know a value yet)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _list(raw: Mapping[str, Any], name: str) -> list[Any]:
    value = raw.get(name, [])
    if not isinstance(value, list):
        raise ProtocolError(f"expected a list field {name!r} in the node's answer")
    return value
