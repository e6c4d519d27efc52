"""Read-after-restart (issue 13, item 8): once ``/readyz`` answers 200 after a ``kill -9`` and a
restart, a consumer reading "to the end" gets every acknowledged record, and the high watermark
consumers see never moves backwards when a leader dies and comes back."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from testkit.cluster import Cluster, wait_for_leader
from testkit.http import HttpError
from testkit.waiting import wait_until
from tests.cluster.test_failover import Writer, check_acknowledged

pytestmark = pytest.mark.cluster


def produce_acked(cluster: Cluster, log: str, count: int, per_request: int = 100) -> set[str]:
    """Produce ``count`` records with acks=all to tablet 0; the values acknowledged."""
    acked: set[str] = set()
    for first in range(0, count, per_request):
        values = [f"r{i}" for i in range(first, min(first + per_request, count))]
        cluster.produce(log, [{"value": v, "tablet": 0} for v in values])
        acked.update(values)
    return acked


def test_single_replica_node_serves_every_acked_record_once_ready(tmp_path: Path) -> None:
    with Cluster.running(tmp_path, 1) as cluster:
        cluster.create_log("solo", tablets=1, replication_factor=1, min_insync_replicas=1)
        acked = produce_acked(cluster, "solo", 3000)
        cluster.kill("n1")  # SIGKILL right after the last ack: the checkpointed HW lags
        cluster.start("n1")
        cluster.wait_ready(["n1"])
        values = {r["value"] for r in cluster.read_all("solo", 0)}
        missing = acked - values
        assert not missing, f"{len(missing)} acknowledged records not readable once ready"


@dataclass
class HighWatermarkWatcher:
    """Reads the tablet again and again from every running node in turn (one request at a
    time, so each answer comes after the previous one) and records the high watermarks."""

    cluster: Cluster
    log: str
    seen: list[tuple[str, int]] = field(default_factory=list)
    not_ready: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        i = 0
        while not self.stop.is_set():
            nodes = self.cluster.running_nodes()
            i += 1
            if not nodes:
                continue
            node = nodes[i % len(nodes)]
            path = f"/v1/logs/{self.log}/tablets/0/records?offset=0&max_records=1"
            try:
                reply = self.cluster.api(node, "GET", path, timeout_s=5)
            except HttpError as exc:
                self.not_ready += exc.code == "not_ready"
                continue
            except OSError:
                continue
            self.seen.append((node, int(reply["high_watermark"])))

    def finish(self) -> list[tuple[int, str, int, str, int]]:
        """Stop; the answers whose high watermark was below an earlier answer's."""
        self.stop.set()
        assert self.thread is not None
        self.thread.join(30)
        backwards = []
        best, best_node = -1, ""
        for index, (node, hw) in enumerate(self.seen):
            if hw < best:
                backwards.append((index, node, hw, best_node, best))
            if hw > best:
                best, best_node = hw, node
        return backwards


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with Cluster.running(tmp_path, 3) as c:
        yield c


def test_leader_kill_and_restart_never_shows_a_lower_high_watermark(cluster: Cluster) -> None:
    cluster.create_log("stream", tablets=1)
    writer = Writer(cluster, "stream", 0)
    watcher = HighWatermarkWatcher(cluster, "stream")
    writer.start()
    watcher.start()
    try:
        wait_until(lambda: len(writer.acked) >= 100, 20, "the writer gets going")
        old = cluster.leader_of("stream", 0)
        assert old is not None
        cluster.kill(old)
        new = wait_for_leader(cluster, "stream", 0, exclude=[old])
        acked_before = len(writer.acked)
        wait_until(lambda: len(writer.acked) >= acked_before + 100, 20, "writes resume")
        cluster.start(old)
        cluster.wait_ready([old])
        wait_until(
            lambda: old in cluster.tablet("stream", 0, new)["isr"], 30, f"{old} rejoins the ISR"
        )
        seen_before = len(watcher.seen)
        wait_until(lambda: len(watcher.seen) >= seen_before + 20, 20, "reads go on")
    finally:
        writer.finish()
        backwards = watcher.finish()
    assert len(watcher.seen) > 50, "the watcher read too little to tell"
    assert not backwards, f"the high watermark moved backwards: {backwards[:5]}"
    check_acknowledged(cluster, writer)
