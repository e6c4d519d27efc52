"""The controller role: the term this node claimed, whether it is active, confirmed commands.

**Who is controller.** While the local node is Raft leader, the controller loop
(:class:`replication.controller.Controller`) claims the role for the current Raft term
(``claim_controller`` command, :meth:`ControllerRole.claim`); the node is *active* once the
claim is applied and it is still leader in that term. Every later command carries that term,
so commands of a deposed controller are no-ops in the map.

**Confirmed effects.** pysyncobj can report a false SUCCESS after a partition heals (measured
with 0.3.17: commands sent to an isolated old leader got SUCCESS and were kept by no node). A
command's result is trusted only if, after it was applied here, this node is still Raft leader
in the claim's term: an entry of term T applied by the leader of term T was committed by a
majority (the false success needs a node that has lost that leadership).
Otherwise the outcome is unknown (:class:`MetadataTimeout`). One command is in flight at a time
(``asyncio.Lock``), so an isolated leader can only ever build a one-entry divergent tail.
:func:`error_for_rejection` maps a command the map recorded as a no-op to its error.

The role also owns the controller's background tasks (registrations, probes): they act for
one term and are cancelled when the role is lost.

Event-loop thread only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from replication.command_base import Command, Result
from replication.commands import ClaimController
from replication.errors import (
    AlreadyExists,
    CommandRejected,
    InvalidRequest,
    MetadataTimeout,
    MetadataUnavailable,
    NotController,
    PeerUnreachable,
    ReplicationError,
    StaleEpoch,
    StaleVersion,
    UnknownLog,
)
from replication.metadata import MetadataStore
from replication.model import ClusterView, TabletInfo

# The controller logs under one name, whichever of its modules a line comes from.
log = logging.getLogger("replication.controller")

__all__ = ["COMMAND_ATTEMPTS", "COMMAND_TIMEOUT_S", "ControllerRole", "error_for_rejection"]

COMMAND_TIMEOUT_S = 2.0
COMMAND_ATTEMPTS = 3


def error_for_rejection(result: Result) -> ReplicationError:
    """The error for a command the map recorded as a no-op."""
    code, message = str(result.error), result.message
    if code == "stale_epoch":
        return StaleEpoch(message)
    if code == "stale_version":
        return StaleVersion(message)
    if code == "already_exists":
        return AlreadyExists(message)
    if code == "not_found":
        return UnknownLog(message)
    if code in ("invalid", "bad_command", "unknown_node"):
        return InvalidRequest(message)
    if code in ("stale_term", "unclaimed_term"):
        return NotController(None)
    return CommandRejected(code, message)


class ControllerRole:
    """This node's claim on the controller role and the commands made under it."""

    def __init__(self, store: MetadataStore, node_id: str) -> None:
        self.store = store
        self.node_id = node_id
        self._term: int | None = None
        self._lock = asyncio.Lock()
        self._background: dict[str, asyncio.Task[None]] = {}

    @property
    def is_active(self) -> bool:
        """Whether this node is the controller now: Raft leader in the term it claimed."""
        term, view = self._term, self.store.view
        return (
            term is not None
            and self.store.is_raft_leader()
            and self.store.raft_term() == term
            and view.controller == self.node_id
            and view.controller_term == term
        )

    @property
    def term(self) -> int | None:
        """The controller term claimed by this node (None if it never became active)."""
        return self._term

    def require_active(self) -> int:
        """The claimed term; raises NotController (with the best hint) unless active."""
        if not self.is_active:
            hint = self.store.view.controller
            if hint == self.node_id:
                leader = self.store.raft_leader_id()
                hint = leader if leader != self.node_id else None
            raise NotController(hint)
        assert self._term is not None
        return self._term

    def deactivate(self) -> None:
        """Give the role up (no longer Raft leader): forget the term, cancel its tasks."""
        self._term = None
        for task in self._background.values():
            task.cancel()
        self._background.clear()

    def still_leader(self, term: int) -> bool:
        return self.store.is_raft_leader() and self.store.raft_term() == term

    async def claim(self, term: int) -> ClusterView | None:
        """Claim the role for Raft ``term``; the view that confirms it, None if not confirmed."""
        async with self._lock:
            result = await self.store.propose(
                ClaimController(self.node_id, term), COMMAND_TIMEOUT_S
            )
            if not result.ok:
                log.warning("controller claim for term %d rejected: %s", term, result)
                return None
            view = self.store.view
            confirmed = view.controller == self.node_id and view.controller_term == term
            if not (confirmed and self.still_leader(term)):
                return None
            self._term = term
            return view

    async def command(self, cmd: Command) -> tuple[Result, bool]:
        """Apply ``cmd`` (with our term) and confirm it; returns (result, was_retried).

        Retries after an unknown outcome are safe because every command is idempotent or
        compare-and-set; ``was_retried`` lets the caller recognise its own earlier success
        in a CAS failure.
        """
        async with self._lock:
            for attempt in range(COMMAND_ATTEMPTS):
                term = self.require_active()
                assert getattr(cmd, "term", term) == term
                try:
                    result = await self.store.propose(cmd, COMMAND_TIMEOUT_S)
                except (MetadataTimeout, MetadataUnavailable) as exc:
                    log.info("controller command %s attempt %d: %s", cmd.op, attempt + 1, exc)
                    await asyncio.sleep(0.05 * (attempt + 1))
                    continue
                if not self.still_leader(term):
                    raise MetadataTimeout(
                        "lost Raft leadership while applying a command; its outcome is unknown"
                    )
                return result, attempt > 0
        raise MetadataTimeout(f"metadata command {cmd.op} did not complete; it may have")

    def tablet_or_raise(self, log_name: str, index: int) -> TabletInfo:
        tablet = self.store.view.tablet(log_name, index)
        if tablet is None:
            raise UnknownLog(f"no tablet {index} of log {log_name!r}")
        return tablet

    def spawn(self, key: str, coro: Any) -> None:
        """Run ``coro`` in the background unless a task with ``key`` still runs."""
        running = self._background.get(key)
        if running is not None and not running.done():
            coro.close()
            return

        async def guarded() -> None:
            try:
                await coro
            except (ReplicationError, PeerUnreachable) as exc:
                log.info("controller task %s: %s", key, exc)

        self._background[key] = asyncio.get_running_loop().create_task(guarded(), name=key)

    async def close(self) -> None:
        """Cancel background work (registrations, probes)."""
        tasks = list(self._background.values())
        self.deactivate()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
