"""Calling the controller: one interface whether it runs in this process or on another node.

:class:`ControllerApi` is what the rest of a node asks of the controller. The local
:class:`replication.controller.Controller` implements it, and so does :class:`RemoteController`,
the controller node reached over its internal HTTP API (``/internal/controller/<op>``, served
by ``node.controller_api``); the caller picks one and calls it the same way.

Every HTTP call POSTs JSON with the internal token header and is bounded by a timeout. Failures
are one of two kinds, so callers can tell "maybe delivered" from "answered no":

* :class:`PeerUnreachable` — no answer (``refused`` says nothing listens there);
* a :class:`ReplicationError` subclass rebuilt from the JSON error reply (``NotController``
  with the controller hint, ``StaleEpoch``, ``StaleVersion``, ...), else :class:`PeerError`.

Event-loop thread only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Protocol

import aiohttp

from replication.auth import INTERNAL_TOKEN_HEADER, internal_token
from replication.errors import (
    AlreadyExists,
    CommandRejected,
    InvalidRequest,
    MetadataTimeout,
    MetadataUnavailable,
    NotController,
    PeerError,
    ReplicationError,
    StaleEpoch,
    StaleVersion,
    UnknownLog,
)
from replication.log_settings import LogSettings
from replication.model import TabletInfo
from replication.peer_errors import CONNECTION_ERRORS, peer_error, peer_unreachable

CONTROLLER_PATH = "/internal/controller/"
_SIMPLE_ERRORS: dict[str, type[ReplicationError]] = {
    "stale_epoch": StaleEpoch,
    "stale_version": StaleVersion,
    "already_exists": AlreadyExists,
    "not_found": UnknownLog,
    "bad_request": InvalidRequest,
    "timeout": MetadataTimeout,
    "metadata_unavailable": MetadataUnavailable,
}


def tablet_to_json(tablet: TabletInfo) -> dict[str, Any]:
    return {
        "log": tablet.log,
        "tablet": tablet.index,
        "replicas": list(tablet.replicas),
        "leader": tablet.leader,
        "leader_epoch": tablet.leader_epoch,
        "leader_incarnation": tablet.leader_incarnation,
        "isr": list(tablet.isr),
        "version": tablet.version,
    }


def tablet_from_json(raw: Any) -> TabletInfo:
    """Inverse of :func:`tablet_to_json`; raises ValueError on junk."""
    try:
        return TabletInfo(
            log=str(raw["log"]),
            index=int(raw["tablet"]),
            replicas=tuple(str(r) for r in raw["replicas"]),
            leader=None if raw["leader"] is None else str(raw["leader"]),
            leader_epoch=int(raw["leader_epoch"]),
            leader_incarnation=int(raw["leader_incarnation"]),
            isr=tuple(str(r) for r in raw["isr"]),
            version=int(raw["version"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed tablet description: {exc!r}") from None


def error_from_reply(address: str, status: int, body: bytes) -> ReplicationError:
    """The error a controller's JSON error reply stands for."""
    try:
        parsed = json.loads(body)
        code, message = str(parsed["error"]), str(parsed.get("message", ""))
    except (ValueError, TypeError, KeyError):
        return peer_error(address, status, body)
    if code == "not_controller":
        hint = parsed.get("controller")
        return NotController(hint if isinstance(hint, str) else None)
    if code == "command_rejected":
        return CommandRejected(str(parsed.get("reason", code)), message)
    error_class = _SIMPLE_ERRORS.get(code)
    if error_class is not None:
        return error_class(message)
    return PeerError(address, status, code, message)


class ControllerApi(Protocol):
    """What a node asks of the active controller, wherever it runs.

    Every method raises :class:`NotController` when the callee is not the active controller;
    a remote callee also raises :class:`PeerUnreachable` when it cannot be reached.
    """

    async def create_log(self, name: str, settings: LogSettings) -> list[TabletInfo]: ...

    async def delete_log(self, name: str) -> None: ...

    async def alter_isr(
        self,
        log_name: str,
        tablet: int,
        leader: str,
        leader_epoch: int,
        version: int,
        isr: Sequence[str],
    ) -> TabletInfo: ...

    async def elect_leader(
        self, log_name: str, tablet: int, leader_epoch: int, new_leader: str
    ) -> TabletInfo: ...

    async def report_unreachable(self, reporter: str, node: str) -> dict[str, Any]: ...

    async def commit_offsets(self, group: str, offsets: Sequence[Sequence[Any]]) -> None: ...


class ControllerClient:
    """The HTTP calls one node makes to controller nodes. Event-loop thread only.

    :meth:`at` gives the controller at one address as a :class:`ControllerApi`; heartbeats
    and probes name their target per call (a node heartbeats whichever node it believes is
    controller, and the controller probes the nodes it suspects).
    """

    def __init__(
        self, session: aiohttp.ClientSession, secret: str, *, timeout_s: float = 10.0
    ) -> None:
        self._session = session
        self._headers = {
            INTERNAL_TOKEN_HEADER: internal_token(secret),
            "Content-Type": "application/json",
        }
        self._timeout_s = timeout_s

    def at(self, address: str) -> RemoteController:
        """The controller node at API ``address``."""
        return RemoteController(self, address)

    async def heartbeat(
        self,
        address: str,
        node: str,
        incarnation: int,
        api_address: str,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """Tell the controller ``node`` (this process: ``incarnation``) is alive."""
        body = {"node": node, "incarnation": incarnation, "address": api_address}
        return await self.post(address, "heartbeat", body, timeout_s)

    async def probe(self, address: str, timeout_s: float) -> bool:
        """True iff a connection to ``address`` is actively refused (nothing listens there).

        Any answer, a timeout or another network error is False: only a refusal is evidence
        that the process is gone rather than slow.
        """
        try:
            async with self._session.get(
                f"http://{address}/healthz", timeout=aiohttp.ClientTimeout(total=timeout_s)
            ) as resp:
                await resp.read()
        except CONNECTION_ERRORS as exc:
            return peer_unreachable(address, exc, timeout_s).refused
        return False

    async def post(
        self, address: str, op: str, body: dict[str, Any], timeout_s: float | None = None
    ) -> dict[str, Any]:
        """POST ``body`` to the controller operation ``op`` at ``address``; its JSON reply."""
        timeout_s = timeout_s or self._timeout_s
        try:
            async with self._session.post(
                f"http://{address}{CONTROLLER_PATH}{op}",
                data=json.dumps(body, separators=(",", ":")),
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=timeout_s),
            ) as resp:
                payload = await resp.read()
                if resp.status != 200:
                    raise error_from_reply(address, resp.status, payload)
        except CONNECTION_ERRORS as exc:
            raise peer_unreachable(address, exc, timeout_s) from None
        try:
            reply = json.loads(payload)
        except ValueError:
            reply = None
        if not isinstance(reply, dict):
            raise PeerError(address, resp.status, "bad_reply", "the reply is not a JSON object")
        return reply


class RemoteController:
    """The controller node at one address, called over HTTP as a :class:`ControllerApi`.

    Cheap to build per call (``ControllerClient.at``). Event-loop thread only.
    """

    def __init__(self, client: ControllerClient, address: str) -> None:
        self._client = client
        self.address = address

    async def create_log(self, name: str, settings: LogSettings) -> list[TabletInfo]:
        body = {"name": name, "settings": settings.to_dict()}
        reply = await self._client.post(self.address, "create_log", body)
        return self._tablets(reply.get("tablets"))

    async def delete_log(self, name: str) -> None:
        await self._client.post(self.address, "delete_log", {"name": name})

    async def alter_isr(
        self,
        log_name: str,
        tablet: int,
        leader: str,
        leader_epoch: int,
        version: int,
        isr: Sequence[str],
    ) -> TabletInfo:
        """Compare-and-set the ISR; raises StaleEpoch/StaleVersion when the CAS fails."""
        body = {
            "log": log_name,
            "tablet": tablet,
            "leader": leader,
            "leader_epoch": leader_epoch,
            "version": version,
            "isr": list(isr),
        }
        reply = await self._client.post(self.address, "alter_isr", body)
        return self._tablets([reply.get("tablet")])[0]

    async def elect_leader(
        self, log_name: str, tablet: int, leader_epoch: int, new_leader: str
    ) -> TabletInfo:
        body = {
            "log": log_name,
            "tablet": tablet,
            "leader_epoch": leader_epoch,
            "new_leader": new_leader,
        }
        reply = await self._client.post(self.address, "elect_leader", body)
        return self._tablets([reply.get("tablet")])[0]

    async def report_unreachable(self, reporter: str, node: str) -> dict[str, Any]:
        """Tell the controller ``reporter`` could not connect to ``node``."""
        body = {"reporter": reporter, "node": node}
        return await self._client.post(self.address, "report_unreachable", body)

    async def commit_offsets(self, group: str, offsets: Sequence[Sequence[Any]]) -> None:
        body = {"group": group, "offsets": [list(o) for o in offsets]}
        await self._client.post(self.address, "commit_offsets", body)

    def _tablets(self, raw: Any) -> list[TabletInfo]:
        if not isinstance(raw, list):
            raise PeerError(self.address, 200, "bad_reply", "the reply lists no tablets")
        try:
            return [tablet_from_json(t) for t in raw]
        except ValueError as exc:
            raise PeerError(self.address, 200, "bad_reply", str(exc)) from None
