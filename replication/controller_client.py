"""HTTP client for the controller's internal API (``/internal/controller/<op>``).

Every call POSTs JSON with the internal token header and is bounded by a timeout. Failures are
one of two kinds, so callers can tell "maybe delivered" from "answered no":

* :class:`PeerUnreachable` — no answer (``refused`` says nothing listens there);
* a :class:`ReplicationError` subclass rebuilt from the JSON error reply (``NotController``
  with the controller hint, ``StaleEpoch``, ``StaleVersion``, ...), else :class:`RemoteError`.

Event-loop thread only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp

from replication.auth import INTERNAL_TOKEN_HEADER, internal_token
from replication.errors import (
    AlreadyExists,
    CommandRejected,
    InvalidRequest,
    MetadataTimeout,
    MetadataUnavailable,
    NotController,
    PeerUnreachable,
    RemoteError,
    ReplicationError,
    StaleEpoch,
    StaleVersion,
    UnknownLog,
)
from replication.model import TabletInfo

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
    """Inverse of :func:`tablet_to_json`; raises RemoteError-compatible ValueError on junk."""
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
        return RemoteError(address, status, "http_error", body[:200].decode("utf-8", "replace"))
    if code == "not_controller":
        hint = parsed.get("controller")
        return NotController(hint if isinstance(hint, str) else None)
    if code == "command_rejected":
        return CommandRejected(str(parsed.get("reason", code)), message)
    error_class = _SIMPLE_ERRORS.get(code)
    if error_class is not None:
        return error_class(message)
    return RemoteError(address, status, code, message)


class ControllerClient:
    """Typed calls from one node to the controller node. Event-loop thread only."""

    def __init__(
        self, session: aiohttp.ClientSession, secret: str, *, timeout_s: float = 10.0
    ) -> None:
        self._session = session
        self._headers = {
            INTERNAL_TOKEN_HEADER: internal_token(secret),
            "Content-Type": "application/json",
        }
        self._timeout_s = timeout_s

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
        return await self._post(address, "heartbeat", body, timeout_s)

    async def create_log(
        self, address: str, name: str, settings: Mapping[str, Any]
    ) -> list[TabletInfo]:
        reply = await self._post(address, "create_log", {"name": name, "settings": dict(settings)})
        return self._tablets(address, reply.get("tablets"))

    async def delete_log(self, address: str, name: str) -> None:
        await self._post(address, "delete_log", {"name": name})

    async def alter_isr(
        self,
        address: str,
        log: str,
        tablet: int,
        leader: str,
        leader_epoch: int,
        version: int,
        isr: Sequence[str],
    ) -> TabletInfo:
        """Compare-and-set the ISR; raises StaleEpoch/StaleVersion when the CAS fails."""
        body = {
            "log": log,
            "tablet": tablet,
            "leader": leader,
            "leader_epoch": leader_epoch,
            "version": version,
            "isr": list(isr),
        }
        reply = await self._post(address, "alter_isr", body)
        return self._tablets(address, [reply.get("tablet")])[0]

    async def elect_leader(
        self, address: str, log: str, tablet: int, leader_epoch: int, new_leader: str
    ) -> TabletInfo:
        body = {
            "log": log,
            "tablet": tablet,
            "leader_epoch": leader_epoch,
            "new_leader": new_leader,
        }
        reply = await self._post(address, "elect_leader", body)
        return self._tablets(address, [reply.get("tablet")])[0]

    async def report_unreachable(self, address: str, reporter: str, node: str) -> dict[str, Any]:
        """Tell the controller ``reporter`` could not connect to ``node``."""
        return await self._post(address, "report_unreachable", {"reporter": reporter, "node": node})

    async def commit_offsets(
        self, address: str, group: str, offsets: Sequence[Sequence[Any]]
    ) -> None:
        await self._post(
            address, "commit_offsets", {"group": group, "offsets": [list(o) for o in offsets]}
        )

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
        except aiohttp.ClientConnectorError as exc:
            return isinstance(exc.os_error, ConnectionRefusedError)
        except (aiohttp.ClientError, TimeoutError):
            return False
        return False

    async def _post(
        self, address: str, op: str, body: dict[str, Any], timeout_s: float | None = None
    ) -> dict[str, Any]:
        timeout = aiohttp.ClientTimeout(total=timeout_s or self._timeout_s)
        try:
            async with self._session.post(
                f"http://{address}{CONTROLLER_PATH}{op}",
                data=json.dumps(body, separators=(",", ":")),
                headers=self._headers,
                timeout=timeout,
            ) as resp:
                payload = await resp.read()
                if resp.status != 200:
                    raise error_from_reply(address, resp.status, payload)
        except aiohttp.ClientConnectorError as exc:
            refused = isinstance(exc.os_error, ConnectionRefusedError)
            raise PeerUnreachable(address, str(exc.os_error), refused=refused) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise PeerUnreachable(address, str(exc) or type(exc).__name__, refused=False) from None
        try:
            reply = json.loads(payload)
        except ValueError:
            reply = None
        if not isinstance(reply, dict):
            raise RemoteError(address, resp.status, "bad_reply", "the reply is not a JSON object")
        return reply

    @staticmethod
    def _tablets(address: str, raw: Any) -> list[TabletInfo]:
        if not isinstance(raw, list):
            raise RemoteError(address, 200, "bad_reply", "the reply lists no tablets")
        try:
            return [tablet_from_json(t) for t in raw]
        except ValueError as exc:
            raise RemoteError(address, 200, "bad_reply", str(exc)) from None
