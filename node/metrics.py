"""Prometheus metrics of one node (``GET /metrics``).

Counters are bumped on the hot path (a few hundred nanoseconds each); per-tablet gauges are
filled at scrape time from the live state, so they cost nothing between scrapes.
Event-loop thread only (prometheus_client itself is thread-safe).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

if TYPE_CHECKING:
    from node.context import NodeContext

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class NodeMetrics:
    """Every metric the node exports, on a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.produce_records = Counter(
            "tabletlog_produce_records", "Records acknowledged", ["log"], registry=r
        )
        self.produce_bytes = Counter(
            "tabletlog_produce_bytes", "Request bytes acknowledged", ["log"], registry=r
        )
        self.produce_latency = Histogram(
            "tabletlog_produce_latency_seconds",
            "Produce request latency (receipt to acknowledgement)",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.consume_records = Counter(
            "tabletlog_consume_records", "Records served as JSON", ["log"], registry=r
        )
        self.fetch_requests = Counter(
            "tabletlog_replica_fetch_requests",
            "Replica fetch requests served as leader",
            registry=r,
        )
        self.high_watermark = Gauge(
            "tabletlog_tablet_high_watermark",
            "High watermark of tablets led here",
            ["log", "tablet"],
            registry=r,
        )
        self.end_offset = Gauge(
            "tabletlog_tablet_end_offset",
            "End offset of local replicas",
            ["log", "tablet"],
            registry=r,
        )
        self.isr_size = Gauge(
            "tabletlog_tablet_isr_size",
            "In-sync replicas of tablets led here",
            ["log", "tablet"],
            registry=r,
        )
        self.leaders = Gauge("tabletlog_tablets_led", "Tablets this node leads", registry=r)
        self.replicas = Gauge("tabletlog_replicas", "Tablet replicas on this node", registry=r)
        self.raft_term = Gauge("tabletlog_raft_term", "Raft term of the metadata map", registry=r)
        self.is_controller = Gauge(
            "tabletlog_is_controller", "1 if this node is the controller", registry=r
        )
        self.tail_cache_bytes = Gauge(
            "tabletlog_tail_cache_bytes",
            "Bytes of recent batches held in memory (all tablets)",
            registry=r,
        )
        self.reads = Gauge(
            "tabletlog_log_reads",
            "Reads of local replicas since they opened",
            ["source"],
            registry=r,
        )
        self.corrupt_recoveries = Gauge(
            "tabletlog_corrupt_segment_recoveries",
            "Replicas truncated at corrupt data since start",
            registry=r,
        )

    def observe_produce(self, log: str, records: int, size: int, seconds: float) -> None:
        self.produce_records.labels(log).inc(records)
        self.produce_bytes.labels(log).inc(size)
        self.produce_latency.observe(seconds)

    def observe_consume(self, log: str, records: int) -> None:
        self.consume_records.labels(log).inc(records)

    def refresh(self, ctx: NodeContext) -> None:
        """Fill the gauges from the node's current state (called at scrape time)."""
        self.high_watermark.clear()
        self.end_offset.clear()
        self.isr_size.clear()
        for tablet, replica in ctx.replicas.replicas.items():
            self.end_offset.labels(tablet.log, str(tablet.index)).set(replica.log.end_offset)
        live = [lead for lead in ctx.replicas.leaders.values() if not lead.closed]
        for leader in live:
            labels = (leader.tablet.log, str(leader.tablet.index))
            self.high_watermark.labels(*labels).set(leader.log.high_watermark)
            self.isr_size.labels(*labels).set(len(leader.isr))
        stats = [replica.log.stats for replica in ctx.replicas.replicas.values()]
        cached = sum(st.cached_reads for st in stats)
        self.reads.labels("memory").set(cached)
        self.reads.labels("disk").set(sum(st.reads for st in stats) - cached)
        self.tail_cache_bytes.set(ctx.replicas.logs.tail_budget.total)
        self.leaders.set(len(live))
        self.replicas.set(len(ctx.replicas.replicas))
        self.raft_term.set(ctx.store.raft_term())
        self.is_controller.set(1 if ctx.controller.is_active else 0)
        self.corrupt_recoveries.set(ctx.replicas.corrupt_recoveries)
