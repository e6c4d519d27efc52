"""Metadata views built by hand, for the table tests of ``replication.rules``.

A rule reads a :class:`ClusterView`; building one directly (rather than by applying commands)
keeps each case to the few facts it is about.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from replication.model import ClusterView, LogInfo, NodeInfo, TabletId, TabletInfo

NODES = ("a", "b", "c")


def tablet(
    leader: str | None = "a",
    isr: tuple[str, ...] = NODES,
    *,
    replicas: tuple[str, ...] = NODES,
    epoch: int = 3,
    incarnation: int = 1,
    log: str = "log",
    index: int = 0,
) -> TabletInfo:
    """A tablet of ``log`` (version 0) led by ``leader`` at ``epoch``."""
    return TabletInfo(log, index, replicas, leader, epoch, incarnation, isr, 0)


def cluster_view(
    tablets: Iterable[TabletInfo] = (),
    *,
    alive: Iterable[str] = NODES,
    nodes: Iterable[str] = NODES,
    log_ids: Mapping[str, int] | None = None,
    log_seq: int | None = None,
    missing_logs: Iterable[str] = (),
) -> ClusterView:
    """A view of ``nodes`` (those in ``alive`` alive, at incarnation 1, at ``<id>:1``) holding
    ``tablets``; each of their logs but ``missing_logs`` exists with the id ``log_ids`` gives
    (1 by default), and ``log_seq`` defaults to the largest id."""
    listed = list(tablets)
    live = set(alive)
    ids = {t.log: 1 for t in listed} | dict(log_ids or {})
    for name in missing_logs:
        ids.pop(name, None)
    by_log: dict[str, list[TabletInfo]] = {}
    for info in listed:
        by_log.setdefault(info.log, []).append(info)
    return ClusterView(
        cluster_name="t",
        controller="a",
        controller_term=1,
        nodes=MappingProxyType({n: NodeInfo(n, f"{n}:1", n in live, 1) for n in nodes}),
        logs=MappingProxyType(
            {
                name: LogInfo(name, MappingProxyType({}), len(by_log.get(name, ())), str(i))
                for name, i in ids.items()
            }
        ),
        tablets=MappingProxyType({TabletId(t.log, t.index): t for t in listed}),
        consumer_offsets=MappingProxyType({}),
        applied_index=1,
        log_seq=max(ids.values(), default=0) if log_seq is None else log_seq,
        _by_log=MappingProxyType({name: tuple(ts) for name, ts in by_log.items()}),
    )
