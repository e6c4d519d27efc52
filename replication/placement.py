"""Where a new log's replicas go, and who leads a tablet after a failure. Pure and thread-safe.

The first replica of a tablet is its *preferred leader*: a new tablet starts led by it. Placement
spreads leaders first (the load that matters: produce traffic and fetches) and replicas second,
always choosing the node with the fewest of them so far and breaking ties by the node order of
the config, so every controller computes the same answer from the same map.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Protocol, TypeVar


def place_replicas(
    live_nodes: Sequence[str],
    all_nodes: Sequence[str],
    existing_tablets: Iterable[Sequence[str]],
    tablets: int,
    rf: int,
) -> list[list[str]]:
    """Replica lists (preferred leader first) for ``tablets`` new tablets of ``rf`` replicas.

    ``existing_tablets`` are the replica lists already in the map (first = preferred leader);
    they count towards the load being evened out. Live nodes are used first; dead ones only when
    fewer than ``rf`` nodes are live (the tablet is then under-replicated until they return).
    Raises ValueError if ``rf`` exceeds the number of nodes or either count is not positive.
    """
    if tablets < 1 or rf < 1:
        raise ValueError("tablets and replication factor must be positive")
    nodes = list(dict.fromkeys(all_nodes))
    if rf > len(nodes):
        raise ValueError(f"replication factor {rf} exceeds the {len(nodes)} nodes of the cluster")
    live = set(live_nodes)
    order = {node: i for i, node in enumerate(nodes)}
    leaders = dict.fromkeys(nodes, 0)
    replicas = dict.fromkeys(nodes, 0)
    for existing in existing_tablets:
        for i, node in enumerate(existing):
            if node in replicas:
                replicas[node] += 1
                if i == 0:
                    leaders[node] += 1

    def leader_key(node: str) -> tuple[int, int, int, int]:
        return (node not in live, leaders[node], replicas[node], order[node])

    def replica_key(node: str) -> tuple[int, int, int, int]:
        # Among equally loaded nodes, prefer those leading more: they are the least likely to
        # be picked as a leader (which adds a replica) later, so replica counts stay level.
        return (node not in live, replicas[node], -leaders[node], order[node])

    result: list[list[str]] = []
    for _ in range(tablets):
        leader = min(nodes, key=leader_key)
        chosen = [leader]
        for _ in range(rf - 1):
            chosen.append(min((n for n in nodes if n not in chosen), key=replica_key))
        leaders[leader] += 1
        for node in chosen:
            replicas[node] += 1
        result.append(chosen)
    assert all(len(set(r)) == rf for r in result)
    return result


def choose_leader(
    replicas: Sequence[str],
    isr: Sequence[str],
    is_alive: Callable[[str], bool],
    exclude: str | None = None,
) -> str | None:
    """The first replica, in replica order, that is in the ISR, alive and not ``exclude``.

    Replica order makes the choice deterministic and favours the preferred leader. Returns None
    when no such replica exists: the tablet stays leaderless rather than lose committed data.
    """
    in_sync = set(isr)
    for node in replicas:
        if node != exclude and node in in_sync and is_alive(node):
            return node
    return None


def choose_unclean_leader(
    replicas: Sequence[str], is_alive: Callable[[str], bool], exclude: str | None = None
) -> str | None:
    """The first alive replica other than ``exclude``, in or out of the ISR (may lose data).

    Only for logs that allow unclean leader election.
    """
    for node in replicas:
        if node != exclude and is_alive(node):
            return node
    return None


def failover_leader(
    replicas: Sequence[str],
    isr: Sequence[str],
    is_alive: Callable[[str], bool],
    exclude: str,
    allow_unclean: bool,
) -> tuple[str | None, tuple[str, ...]]:
    """The new leader and ISR of a tablet whose leader ``exclude`` is gone (fenced).

    A clean choice (:func:`choose_leader`) keeps the ISR. Only when there is none and the log
    allows unclean election does an alive out-of-sync replica lead, as the only ISR member (its
    log is now the truth; committed records it lacks are lost). Otherwise (None, isr): the
    tablet stays leaderless rather than lose committed data.
    """
    leader = choose_leader(replicas, isr, is_alive, exclude=exclude)
    if leader is not None or not allow_unclean:
        return leader, tuple(isr)
    leader = choose_unclean_leader(replicas, is_alive, exclude=exclude)
    if leader is not None and leader not in isr:
        return leader, (leader,)
    return leader, tuple(isr)


class _Tablet(Protocol):
    @property
    def replicas(self) -> tuple[str, ...]: ...
    @property
    def leader(self) -> str | None: ...
    @property
    def isr(self) -> tuple[str, ...]: ...


T = TypeVar("T", bound=_Tablet)


def preferred_leader_move(tablets: Iterable[T], eligible: Callable[[str], bool]) -> T | None:
    """A tablet to hand back to its preferred leader (first replica), or None.

    After a failover and the failed node's return, leadership stays on the survivors; moving
    it back one tablet at a time restores the balance placement chose. Only a preferred
    replica that is in the ISR (caught up) and ``eligible`` (alive and stable) qualifies.
    """
    for tablet in tablets:
        preferred = tablet.replicas[0]
        if tablet.leader != preferred and preferred in tablet.isr and eligible(preferred):
            return tablet
    return None
