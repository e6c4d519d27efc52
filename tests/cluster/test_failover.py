"""Failover on a real cluster: no acknowledged write is lost, no offset holds two values."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from testkit.cluster import FAST_TUNING, Cluster, wait_for_leader
from testkit.http import HttpError
from testkit.waiting import wait_until

pytestmark = pytest.mark.cluster


@dataclass
class Writer:
    """A background acks=all writer to one tablet that records what was acknowledged."""

    cluster: Cluster
    log: str
    tablet: int
    acked: dict[int, str] = field(default_factory=dict)  # offset → value
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    ack_times: list[float] = field(default_factory=list)

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        i = 0
        while not self.stop.is_set():
            value = f"{self.log}-{self.tablet}-{i}"
            i += 1
            nodes = self.cluster.running_nodes()
            if not nodes:
                time.sleep(0.05)
                continue
            try:
                where = self.cluster.produce(
                    self.log,
                    [{"value": value, "tablet": self.tablet}],
                    node_id=nodes[i % len(nodes)],
                    timeout_s=10,
                )[0]
            except (HttpError, OSError) as exc:
                self.failures.append(repr(exc))
                time.sleep(0.02)
                continue
            assert where["offset"] not in self.acked, "two acknowledged writes share an offset"
            self.acked[where["offset"]] = value
            self.ack_times.append(time.monotonic())

    def finish(self) -> None:
        self.stop.set()
        assert self.thread is not None
        self.thread.join(30)

    def acked_after(self, moment: float) -> int:
        return sum(1 for t in self.ack_times if t > moment)


def check_acknowledged(cluster: Cluster, writer: Writer, node_id: str | None = None) -> None:
    """Every acknowledged record readable at its offset; every offset read holds one value."""
    records = cluster.read_all(writer.log, writer.tablet, node_id=node_id)
    by_offset = {r["offset"]: r["value"] for r in records}
    assert len(by_offset) == len(records), "an offset was returned twice"
    missing = {o: v for o, v in writer.acked.items() if by_offset.get(o) != v}
    assert not missing, f"acknowledged writes lost or moved: {sorted(missing.items())[:10]}"
    values = [r["value"] for r in records]
    assert len(values) == len(set(values)), "a value is stored at two offsets"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with Cluster.running(tmp_path, 3) as c:
        yield c


def test_leader_kill_during_acks_all_stream(cluster: Cluster) -> None:
    cluster.create_log("stream", tablets=1)
    writer = Writer(cluster, "stream", 0)
    writer.start()
    wait_until(lambda: len(writer.acked) >= 50, 20, "the writer gets going")
    old = cluster.leader_of("stream", 0)
    assert old is not None
    old_epoch = cluster.tablet("stream", 0)["leader_epoch"]
    killed_at = time.monotonic()
    cluster.kill(old)
    new = wait_for_leader(cluster, "stream", 0, exclude=[old])
    tablet = cluster.tablet("stream", 0, new)
    assert tablet["leader_epoch"] > old_epoch
    assert old not in tablet["isr"]
    wait_until(lambda: writer.acked_after(killed_at) >= 50, 20, "writes resume on the new leader")

    cluster.start(old)  # the old leader truncates any divergent tail, catches up, rejoins
    wait_until(lambda: old in cluster.tablet("stream", 0, new)["isr"], 30, f"{old} rejoins the ISR")
    writer.finish()
    check_acknowledged(cluster, writer)
    replicas = cluster.tablet("stream", 0)["replicas"]
    wait_until(
        lambda: cluster.digests_agree("stream", 0, replicas), 20, "replica digests agree once quiet"
    )


def test_min_insync_replicas_rejects_writes_fast(cluster: Cluster) -> None:
    cluster.create_log("strict", tablets=1, min_insync_replicas=3)
    cluster.produce("strict", [{"value": "all three"}])
    leader = cluster.leader_of("strict", 0)
    follower = next(n for n in cluster.nodes if n != leader)
    cluster.kill(follower)
    wait_until(
        lambda: follower not in cluster.tablet("strict", 0, leader)["isr"],
        20,
        f"{follower} leaves the ISR",
    )
    started = time.monotonic()
    with pytest.raises(HttpError) as info:
        cluster.produce("strict", [{"value": "needs three"}], node_id=leader)
    assert info.value.status == 503 and info.value.code == "not_enough_replicas"
    assert time.monotonic() - started < 5, "rejected fast, not after a timeout"
    acked_one = cluster.produce("strict", [{"value": "leader only"}], acks="1", node_id=leader)
    assert acked_one[0]["offset"] == 1
    cluster.start(follower)
    wait_until(
        lambda: follower in cluster.tablet("strict", 0, leader)["isr"],
        30,
        f"{follower} rejoins the ISR",
    )
    cluster.produce("strict", [{"value": "three again"}], node_id=leader)


def test_divergent_tail_is_truncated_by_epoch(cluster: Cluster) -> None:
    """A leader's unreplicated tail (written with acks=1) is replaced by the next leader's
    records at the same offsets, on every replica (Kafka KIP-101)."""
    cluster.create_log("diverge", tablets=1, min_insync_replicas=1)
    committed = cluster.produce("diverge", [{"value": f"c{i}"} for i in range(10)])
    old = cluster.leader_of("diverge", 0)
    assert old is not None
    followers = [n for n in cluster.nodes if n != old]
    for node in followers:
        cluster.pause(node)
    # A paused follower may have a fetch parked at the leader; the leader answers it when its
    # wait ends (fetch_wait_max_ms) and the answer waits unread in the paused process's socket.
    # Write the tail only after that, so that no follower can receive it.
    time.sleep(3 * FAST_TUNING["fetch_wait_max_ms"] / 1000)
    tail = cluster.produce(
        "diverge", [{"value": f"lost{i}"} for i in range(3)], acks="1", node_id=old
    )
    assert tail[0]["offset"] == committed[-1]["offset"] + 1
    cluster.kill(old)
    for node in followers:
        cluster.resume(node)
    new = wait_for_leader(cluster, "diverge", 0, exclude=[old])
    replaced = cluster.produce("diverge", [{"value": f"new{i}"} for i in range(5)], node_id=new)
    assert replaced[0]["offset"] == tail[0]["offset"], "the new leader reuses the offsets"
    cluster.start(old)
    wait_until(
        lambda: old in cluster.tablet("diverge", 0, new)["isr"],
        30,
        f"{old} truncates, catches up and rejoins the ISR",
    )
    values = [r["value"] for r in cluster.read_all("diverge", 0)]
    assert values == [f"c{i}" for i in range(10)] + [f"new{i}" for i in range(5)]
    wait_until(
        lambda: cluster.digests_agree("diverge", 0, list(cluster.nodes)),
        20,
        "all three replicas hold the same records",
    )
    old_view = cluster.replica_view("diverge", 0, old)
    assert old_view["end_offset"] == 15, old_view


def test_controller_kill_moves_its_tablets(cluster: Cluster) -> None:
    cluster.create_log("ctl", tablets=3)
    controller = cluster.controller()
    assert controller is not None
    led = [t["tablet"] for t in cluster.describe("ctl")["tablets"] if t["leader"] == controller]
    epochs = {t["tablet"]: t["leader_epoch"] for t in cluster.describe("ctl")["tablets"]}
    cluster.kill(controller)
    wait_until(
        lambda: (c := cluster.controller()) is not None and c != controller, 15, "a new controller"
    )
    for tablet in led:
        new = wait_for_leader(cluster, "ctl", tablet, exclude=[controller])
        assert cluster.tablet("ctl", tablet, new)["leader_epoch"] > epochs[tablet]
    survivor = cluster.running_nodes()[0]
    cluster.produce("ctl", [{"value": "after", "tablet": t} for t in range(3)], node_id=survivor)
    view = cluster.api(survivor, "GET", "/v1/cluster")
    alive = {n["id"]: n["alive"] for n in view["nodes"]}
    assert alive[controller] is False


def test_whole_cluster_restarts_keep_logs_and_records(cluster: Cluster) -> None:
    cluster.create_log("keep", tablets=2)
    acked: list[tuple[int, int, str]] = []
    for round_ in range(3):
        offsets = cluster.produce(
            "keep", [{"value": f"r{round_}-{i}", "tablet": i % 2} for i in range(20)]
        )
        acked += [(o["tablet"], o["offset"], f"r{round_}-{i}") for i, o in enumerate(offsets)]
        for node in cluster.nodes:  # every node at once, no warning: metadata and data survive
            cluster.kill(node)
        cluster.start_all()
        cluster.wait_ready()
        assert "keep" in cluster.api(None, "GET", "/v1/logs")["logs"]
        for tablet in range(2):
            wait_for_leader(cluster, "keep", tablet)
    for tablet in range(2):
        # A new leader's high watermark catches up once its followers fetched at its epoch.
        needed = max(o for t, o, _ in acked if t == tablet) + 1

        def caught_up(t: int = tablet, n: int = needed) -> bool:
            return bool(cluster.tablet("keep", t)["high_watermark"] >= n)

        wait_until(caught_up, 15, f"keep/{tablet}'s high watermark passes every acknowledged write")
        stored = {r["offset"]: r["value"] for r in cluster.read_all("keep", tablet)}
        for t, offset, value in acked:
            if t == tablet:
                assert stored.get(offset) == value, (tablet, offset, value)


def test_replicas_of_a_log_deleted_while_down_are_removed(cluster: Cluster) -> None:
    cluster.create_log("gone", tablets=2)
    cluster.produce("gone", [{"value": "x", "tablet": t} for t in range(2)])
    cluster.kill("n3")
    tablets_dir = cluster.nodes["n3"].data_dir / "tablets" / "gone"
    assert tablets_dir.exists()
    cluster.api("n1", "DELETE", "/v1/logs/gone")
    cluster.start("n3")
    cluster.wait_ready(["n3"])
    wait_until(lambda: not tablets_dir.exists(), 15, "n3 deletes its replicas of the old log")


def test_fast_double_failover_truncates_a_tail_the_new_leader_never_saw(cluster: Cluster) -> None:
    """KIP-279: a replica holds records of an epoch the next leader never had (it was paused
    then): when it comes back it asks for the end of that epoch, gets the end of an older one,
    and truncates there — not at its own end, and not losing what both had."""
    cluster.create_log("double", tablets=1, min_insync_replicas=1)
    cluster.produce("double", [{"value": f"c{i}"} for i in range(10)])
    first, second, third = cluster.tablet("double", 0)["replicas"]
    assert cluster.leader_of("double", 0) == first

    def write_tail(leader: str, paused: list[str], prefix: str, count: int) -> None:
        """Records on ``leader`` (and any unpaused follower), not on the paused ones."""
        for node in paused:
            cluster.pause(node)
        time.sleep(3 * FAST_TUNING["fetch_wait_max_ms"] / 1000)  # parked fetches are answered
        cluster.produce(
            "double", [{"value": f"{prefix}{i}"} for i in range(count)], acks="1", node_id=leader
        )

    # Epoch 0: x0..x2 reach first and second, not third; first dies; second leads (epoch 1).
    write_tail(first, [third], "x", 3)
    wait_until(
        lambda: cluster.replica_view("double", 0, second)["end_offset"] == 13,
        10,
        f"{second} copies the x tail",
    )
    cluster.kill(first)
    cluster.resume(third)
    assert wait_for_leader(cluster, "double", 0, exclude=[first]) == second
    cluster.start(first)
    wait_until(
        lambda: set(cluster.tablet("double", 0, second)["isr"]) == {first, second, third},
        30,
        f"{first} rejoins the ISR",
    )

    # Epoch 1: y0, y1 reach only second, which dies at once; first leads (epoch 2).
    write_tail(second, [first, third], "y", 2)
    cluster.kill(second)
    cluster.resume(first)
    cluster.resume(third)
    assert wait_for_leader(cluster, "double", 0, exclude=[second]) == first
    z = cluster.produce("double", [{"value": f"z{i}"} for i in range(4)], node_id=first)
    assert z[0]["offset"] == 13, "the new leader has the x tail but never saw the y tail"

    cluster.start(second)  # holds y0, y1 at epoch 1, which the new leader never had
    wait_until(
        lambda: set(cluster.tablet("double", 0, first)["isr"]) == {first, second, third},
        30,
        f"{second} truncates its epoch-1 tail, catches up and rejoins the ISR",
    )
    wait_until(
        lambda: cluster.digests_agree("double", 0, [first, second, third]),
        20,
        "all three replicas hold the same records",
    )
    values = [r["value"] for r in cluster.read_all("double", 0)]
    assert values == (
        [f"c{i}" for i in range(10)] + [f"x{i}" for i in range(3)] + [f"z{i}" for i in range(4)]
    )
