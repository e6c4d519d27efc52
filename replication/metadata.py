"""The metadata map as the event loop sees it: an immutable view, change events, proposals.

pysyncobj applies commands on its own thread; this facade moves everything onto the loop
thread with ``loop.call_soon_threadsafe`` (the only way pysyncobj's thread touches asyncio), so
the loop never blocks on Raft and never reads a structure another thread is mutating:

* :attr:`MetadataStore.view` is the latest applied :class:`ClusterView`, replaced as a whole
  (immutable snapshot) on the loop thread after each applied command;
* :meth:`MetadataStore.subscribe` callbacks run on the loop thread after each replacement;
* :meth:`MetadataStore.propose` encodes a typed command (:mod:`replication.commands`) into a
  journal entry, completes an asyncio future from pysyncobj's callback and always times out,
  because pysyncobj can lose callbacks.

Construct on the loop thread, which must be the main thread (pysyncobj's tick thread dies with
the thread that constructed it). Every method is for the loop thread only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from replication import model
from replication.command_base import Command, Result
from replication.command_codec import Entry, encode
from replication.errors import MetadataTimeout, MetadataUnavailable
from replication.model import ClusterView
from replication.raft_state import RaftState, error_for
from replication.settings import RaftSettings

log = logging.getLogger(__name__)

Predicate = Callable[[ClusterView], bool]


class RaftBackend(Protocol):
    """What the store needs from the Raft layer (``RaftState``; fakes in tests)."""

    def submit(self, entry: Entry, callback: Callable[[Result | None, int], None]) -> None: ...
    def is_raft_leader(self) -> bool: ...
    def raft_leader_id(self) -> str | None: ...
    def raft_term(self) -> int: ...
    def is_ready(self) -> bool: ...
    def status(self) -> dict[str, Any]: ...
    def close(self) -> None: ...


BackendFactory = Callable[[Callable[[ClusterView], None], Callable[[], None]], RaftBackend]
"""Builds the backend given ``on_view`` and ``on_ready`` (both called from any thread)."""


class MetadataStore:
    """The node's replica of the metadata map, for the event loop. Loop thread only."""

    def __init__(
        self,
        settings: RaftSettings,
        node_id: str,
        raft_dir: str | Path,
        loop: asyncio.AbstractEventLoop,
        *,
        backend: BackendFactory | None = None,
        **raft_options: Any,
    ) -> None:
        """Start the local Raft member; ``raft_options`` go to ``RaftState`` (voters,
        compaction thresholds). ``backend`` replaces Raft entirely (tests)."""
        self._loop = loop
        self._closed = False
        self._ready = False
        self._subscribers: list[Callable[[ClusterView], None]] = []
        self._waiters: list[tuple[Predicate, asyncio.Future[ClusterView]]] = []
        self._view = model.to_view(
            model.initial_state(settings.cluster_name, settings.api_addresses())
        )
        if backend is None:

            def backend(
                on_view: Callable[[ClusterView], None], on_ready: Callable[[], None]
            ) -> RaftBackend:
                return RaftState(
                    settings, node_id, raft_dir, on_view, on_ready=on_ready, **raft_options
                )

        self._raft = backend(self._from_raft_thread, self._ready_from_raft_thread)

    # ------------------------------------------------------------------ reading

    @property
    def view(self) -> ClusterView:
        """The latest applied map (immutable; replaced, never mutated)."""
        return self._view

    @property
    def ready(self) -> bool:
        """Whether this node has applied the Raft leader's commit index at least once.

        Until then the view may lack logs that exist (a restarted node replaying its journal).
        The flag is set on the loop thread in order with the views (pysyncobj reports readiness
        after applying the entries), so once it is True, ``view`` holds every entry up to the
        commit index it caught up with — never a view still waiting to be installed.
        """
        return self._ready and self._raft.is_ready()

    def is_raft_leader(self) -> bool:
        return self._raft.is_raft_leader()

    def raft_term(self) -> int:
        return self._raft.raft_term()

    def raft_leader_id(self) -> str | None:
        return self._raft.raft_leader_id()

    def status(self) -> dict[str, Any]:
        return {**self._raft.status(), "applied_index": self._view.applied_index}

    def subscribe(self, callback: Callable[[ClusterView], None]) -> Callable[[], None]:
        """Call ``callback(view)`` on the loop thread after every applied change; returns a
        function that unsubscribes. A raising callback is logged and kept subscribed."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    async def wait_for(self, predicate: Predicate, timeout_s: float) -> ClusterView:
        """The first view (current or future) for which ``predicate`` holds.

        Re-evaluated after every applied change and when the node becomes ready. Raises
        TimeoutError after ``timeout_s``; MetadataUnavailable if the store closes.
        """
        if predicate(self._view):
            return self._view
        if self._closed:
            raise MetadataUnavailable("the metadata store is closed")
        future: asyncio.Future[ClusterView] = self._loop.create_future()
        entry = (predicate, future)
        self._waiters.append(entry)
        try:
            return await asyncio.wait_for(future, timeout_s)
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(entry)

    # ------------------------------------------------------------------ proposing

    async def propose(self, cmd: Command, timeout_s: float) -> Result:
        """Replicate ``cmd``; returns its result (with ``index`` set) once applied here.

        The result may be ``ok=False`` (the map recorded the command as a no-op). Raises
        MetadataTimeout when the outcome is unknown (timeout, leader change) and
        MetadataUnavailable when the command was certainly not applied. SUCCESS can be false
        after a partition (see replication/controller_role.py): callers confirm effects in the view.
        """
        return await self.propose_entry(encode(cmd), timeout_s)

    async def propose_entry(self, entry: Entry, timeout_s: float) -> Result:
        """:meth:`propose` for an entry already encoded (or built by hand, as tests of garbage
        entries do); the map decodes and validates it on apply like any other."""
        if self._closed:
            raise MetadataUnavailable("the metadata store is closed")
        deadline = time.monotonic() + timeout_s
        loop = self._loop
        future: asyncio.Future[Result] = loop.create_future()

        def on_done(result: Result | None, fail_reason: int) -> None:  # pysyncobj's thread, or ours
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(_settle, future, result, fail_reason)

        self._raft.submit(entry, on_done)
        try:
            result = await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            raise MetadataTimeout(
                f"metadata command {entry.get('op')!r} not applied within {timeout_s:.1f} s; "
                "it may still be"
            ) from None
        index = result.index
        try:
            await self.wait_for(
                lambda v: v.applied_index >= index, max(deadline - time.monotonic(), 0.001)
            )
        except TimeoutError:
            raise MetadataTimeout(
                f"entry {index} was reported applied but is not in this node's view"
            ) from None
        return result

    # ------------------------------------------------------------------ plumbing

    def _from_raft_thread(self, view: ClusterView) -> None:
        with contextlib.suppress(RuntimeError):  # loop closed during shutdown
            self._loop.call_soon_threadsafe(self._install, view)

    def _ready_from_raft_thread(self) -> None:
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._mark_ready)

    def _mark_ready(self) -> None:
        self._ready = True
        self._check_waiters()

    def _install(self, view: ClusterView) -> None:
        self._view = view
        for callback in list(self._subscribers):
            try:
                callback(view)
            except Exception:  # one component's bug must not starve the others of views
                log.exception("metadata subscriber %r failed", callback)
        self._check_waiters()

    def _check_waiters(self) -> None:
        for predicate, future in list(self._waiters):
            if future.done():
                continue
            try:
                matched = predicate(self._view)
            except Exception as exc:  # noqa: BLE001 - hand the caller's bug back to the caller
                future.set_exception(exc)
                continue
            if matched:
                future.set_result(self._view)

    def close(self) -> None:
        """Stop Raft (joins its thread, at most a tick) and fail everything still waiting."""
        if self._closed:
            return
        self._closed = True
        self._raft.close()
        for _, future in self._waiters:
            if not future.done():
                future.set_exception(MetadataUnavailable("the metadata store closed"))


def _settle(future: asyncio.Future[Result], result: object, fail_reason: int) -> None:
    """Complete a proposal's future on the loop thread (no-op if it timed out already)."""
    if future.done():
        return
    error = error_for(fail_reason)
    if error is not None:
        future.set_exception(error)
    elif not isinstance(result, Result):
        future.set_exception(MetadataTimeout("metadata command returned no result"))
    else:
        future.set_result(result)
