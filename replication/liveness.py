"""The active controller's liveness bookkeeping: monotonic timers, no I/O, no Raft.

Heartbeats only touch these timers (they never go through Raft); the controller turns the
decisions made here (who is expired, who is late and worth a probe, which tablet to hand back
to its preferred leader) into commands. The rules themselves are ``replication.rules.liveness``
and ``replication.placement.preferred_leader_move``; this tracker keeps the times they read.
A new controller calls :meth:`reset` at its claim, so every node gets one full session timeout
before it can be fenced. Loop thread only.
"""

from __future__ import annotations

from replication.model import ClusterView, NodeInfo, TabletInfo
from replication.placement import preferred_leader_move
from replication.rules.liveness import is_expired, is_probe_due, is_stable, is_stalled

REBALANCE_PACE_S = 1.0
"""At most one preferred-leader move per this many seconds: leadership changes cost clients
a retry, so spread them out."""


class LivenessTracker:
    """Last-seen times by node, measured on the controller's monotonic clock."""

    def __init__(
        self, session_timeout_s: float, late_s: float, rebalance_after_s: float | None
    ) -> None:
        self.session_timeout_s = session_timeout_s
        self.late_s = late_s
        self.rebalance_after_s = rebalance_after_s
        self.active_since = 0.0
        self._last_seen: dict[str, float] = {}
        self._alive_since: dict[str, float] = {}
        self._last_probe: dict[str, float] = {}
        self._next_rebalance = 0.0
        self._last_check = 0.0

    def reset(self, view: ClusterView, now: float) -> None:
        """Start of a controller term: everyone counts as just heard from."""
        self.active_since = now
        self._last_seen = dict.fromkeys(view.nodes, now)
        self._alive_since = {n.id: now for n in view.nodes.values() if n.alive}
        self._last_probe.clear()
        self._next_rebalance = 0.0
        self._last_check = now

    def check_stall(self, now: float) -> bool:
        """Called every liveness round. If this controller itself was stalled (paused process,
        blocked loop) for longer than a late heartbeat, everyone's silence is its own doing:
        restart every timer rather than fence nodes whose heartbeats are still queued."""
        stalled = is_stalled(now - self._last_check, self.late_s)
        self._last_check = now
        if stalled:
            self._last_seen = dict.fromkeys(self._last_seen, now)
        return stalled

    def heard_from(self, node: str, now: float) -> None:
        self._last_seen[node] = now

    def registered(self, node: str, now: float) -> None:
        self._alive_since[node] = now

    def fenced(self, node: str) -> None:
        self._alive_since.pop(node, None)

    def silent_s(self, node: str, now: float) -> float:
        return now - self._last_seen.get(node, self.active_since)

    def expired(self, view: ClusterView, now: float) -> list[NodeInfo]:
        """Alive nodes silent for longer than the session timeout: to be fenced."""
        return [
            n
            for n in view.nodes.values()
            if n.alive and is_expired(self.silent_s(n.id, now), self.session_timeout_s)
        ]

    def to_probe(self, view: ClusterView, now: float) -> list[str]:
        """Alive nodes whose heartbeat is late and that were not probed lately (marked now)."""
        due = [
            n.id
            for n in view.nodes.values()
            if n.alive
            and is_probe_due(
                self.silent_s(n.id, now),
                now - self._last_probe.get(n.id, float("-inf")),
                self.late_s,
                self.session_timeout_s,
            )
        ]
        for node in due:
            self.probed(node, now)
        return due

    def probed(self, node: str, now: float) -> None:
        self._last_probe[node] = now

    def rebalance_candidate(self, view: ClusterView, now: float) -> TabletInfo | None:
        """A tablet to move back to its preferred leader now, at most one per second.

        The preferred replica must have been alive for ``rebalance_after_s`` under this
        controller and be heartbeating; the ISR check is in ``preferred_leader_move``.
        """
        if self.rebalance_after_s is None or now < self._next_rebalance:
            return None
        self._next_rebalance = now + REBALANCE_PACE_S
        stable_s = self.rebalance_after_s

        def eligible(node: str) -> bool:
            since = self._alive_since.get(node)
            alive_for_s = None if since is None else now - since
            return is_stable(alive_for_s, self.silent_s(node, now), stable_s, self.late_s)

        tablets = sorted(view.tablets.values(), key=lambda t: (t.log, t.index))
        return preferred_leader_move(tablets, eligible)
