"""The data path on a real 3-node cluster: produce, replicate, consume, validate input."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from replication.auth import INTERNAL_TOKEN_HEADER
from testkit.cluster import Cluster
from testkit.http import HttpError, http
from testkit.waiting import wait_until
from wire.batch import build_batch, iter_records
from wire.partitioning import tablet_for_key

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with Cluster.running(tmp_path_factory.mktemp("data-path"), 3) as c:
        c.create_log("events", tablets=3)
        yield c


def test_round_trip_json(cluster: Cluster) -> None:
    records: list[dict[str, Any]] = [
        {"key": f"user-{i % 5}", "value": f"event {i}"} for i in range(30)
    ]
    records.append({"value_b64": base64.b64encode(b"\xff\x00binary").decode(), "tablet": 1})
    offsets = cluster.produce("events", records, node_id="n2")
    assert len(offsets) == len(records)
    for record, where in zip(records[:30], offsets, strict=False):
        assert where["tablet"] == tablet_for_key(record["key"].encode(), 3)
    assert offsets[-1]["tablet"] == 1
    by_tablet: dict[int, dict[int, dict[str, Any]]] = {}
    for tablet in range(3):
        for node in ("n1", "n3"):  # any node answers for any tablet
            read = cluster.read_all("events", tablet, node_id=node)
            by_tablet[tablet] = {r["offset"]: r for r in read}
    for record, where in zip(records[:30], offsets, strict=False):
        got = by_tablet[where["tablet"]][where["offset"]]
        assert got["value"] == record["value"]
        assert got["key"] == record["key"]
        assert isinstance(got["timestamp"], int) and got["timestamp"] > 1_600_000_000_000
    binary = by_tablet[1][offsets[-1]["offset"]]
    assert base64.b64decode(binary["value_b64"]) == b"\xff\x00binary"


def test_same_key_same_tablet_in_order(cluster: Cluster) -> None:
    offsets = [
        cluster.produce("events", [{"key": "order-42", "value": str(i)}])[0] for i in range(10)
    ]
    assert len({o["tablet"] for o in offsets}) == 1
    assert [o["offset"] for o in offsets] == sorted(o["offset"] for o in offsets)


def test_acks_all_record_is_on_every_isr_replica(cluster: Cluster) -> None:
    for _ in range(5):
        where = cluster.produce("events", [{"value": "durable", "tablet": 2}])[0]
        tablet = cluster.tablet("events", 2)
        for replica in tablet["isr"]:
            view = cluster.replica_view("events", 2, replica)
            assert view["end_offset"] > where["offset"], (replica, view, where)


def test_binary_batches_round_trip(cluster: Cluster) -> None:
    batch = build_batch([(b"k", b"v%d" % i) for i in range(100)], create_time_ms=123)
    reply = cluster.api(
        "n3",
        "POST",
        "/v1/logs/events/tablets/0/batches?acks=all",
        raw=batch,
        headers={"Content-Type": "application/vnd.tabletlog.batches"},
    )
    assert reply["end_offset"] - reply["base_offset"] == 100
    body = http(
        "GET",
        cluster.nodes["n1"].url
        + f"/v1/logs/events/tablets/0/batches?offset={reply['base_offset']}",
    )
    got = [r for r in iter_records(body) if r.offset >= reply["base_offset"]]
    assert [r.value for r in got[:100]] == [b"v%d" % i for i in range(100)]
    assert got[0].create_time == 123


def test_long_poll_wakes_on_new_data(cluster: Cluster) -> None:
    end = cluster.tablet("events", 1)["high_watermark"]
    result: dict[str, Any] = {}

    def poll() -> None:
        started = time.monotonic()
        result["reply"] = cluster.api(
            "n2",
            "GET",
            f"/v1/logs/events/tablets/1/records?offset={end}&wait_ms=20000",
            timeout_s=30,
        )
        result["elapsed"] = time.monotonic() - started

    thread = threading.Thread(target=poll)
    thread.start()
    time.sleep(0.3)  # let the poll park (the test is about waking it, not about timing)
    cluster.produce("events", [{"value": "wake up", "tablet": 1}])
    thread.join(30)
    assert [r["value"] for r in result["reply"]["records"]] == ["wake up"]
    assert result["elapsed"] < 15, "the poll was not woken by the write"


def test_seek_by_timestamp(cluster: Cluster) -> None:
    before = int(time.time() * 1000) - 1
    where = cluster.produce("events", [{"value": "after", "tablet": 0}])[0]
    found = cluster.api(None, "GET", f"/v1/logs/events/tablets/0/offsets?timestamp={before}")
    assert found["offset"] <= where["offset"]
    later = cluster.api(
        None,
        "GET",
        f"/v1/logs/events/tablets/0/offsets?timestamp={int(time.time() * 1000) + 60_000}",
    )
    assert later["offset"] == cluster.tablet("events", 0)["high_watermark"]


def test_replica_digests_agree_when_quiet(cluster: Cluster) -> None:
    cluster.produce("events", [{"value": f"x{i}"} for i in range(50)])
    for tablet in range(3):
        replicas: list[str] = cluster.tablet("events", tablet)["replicas"]

        def agree(t: int = tablet, r: list[str] = replicas) -> bool:
            return cluster.digests_agree("events", t, r)

        wait_until(agree, 10, f"replicas of events/{tablet} agree")


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("POST", "/v1/logs/events/records", "{not json", 400, "bad_request"),
        ("POST", "/v1/logs/events/records", {"records": []}, 400, "bad_request"),
        ("POST", "/v1/logs/events/records", {"records": [{"key": "k"}]}, 400, "bad_request"),
        ("POST", "/v1/logs/events/records", {"records": [{"value": 1}]}, 400, "bad_request"),
        (
            "POST",
            "/v1/logs/events/records",
            {"records": [{"value": "v", "tablet": 9}]},
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/logs/events/records",
            {"records": [{"value": "v"}], "acks": "2"},
            400,
            "bad_request",
        ),
        ("POST", "/v1/logs/nope/records", {"records": [{"value": "v"}]}, 404, "not_found"),
        ("GET", "/v1/logs/events/tablets/0/records", None, 400, "bad_request"),
        ("GET", "/v1/logs/events/tablets/0/records?offset=abc", None, 400, "bad_request"),
        (
            "GET",
            "/v1/logs/events/tablets/0/records?offset=999999999",
            None,
            400,
            "offset_out_of_range",
        ),
        ("GET", "/v1/logs/events/tablets/7/records?offset=0", None, 404, "not_found"),
        ("GET", "/v1/logs/nope", None, 404, "not_found"),
        ("POST", "/v1/logs", {"name": "bad name!"}, 400, "bad_request"),
        ("POST", "/v1/logs", {"name": "x", "tablets": "many"}, 400, "bad_request"),
        ("POST", "/v1/logs", {"name": "x", "replication_factor": 9}, 400, "bad_request"),
        ("POST", "/v1/logs", {"name": "x", "colour": "red"}, 400, "bad_request"),
        ("POST", "/v1/logs", {"name": "events"}, 409, "already_exists"),
        ("POST", "/v1/logs/events/tablets/0/batches", b"garbage bytes", 400, "corrupt_batch"),
        ("POST", "/internal/fetch", {"replica": "n1", "tablets": []}, 401, "unauthorized"),
    ],
)
def test_bad_requests_get_clear_4xx(
    cluster: Cluster, method: str, path: str, body: Any, status: int, code: str
) -> None:
    url = cluster.nodes["n1"].url + path
    data = (
        body
        if isinstance(body, bytes)
        else (
            body.encode() if isinstance(body, str) else json.dumps(body).encode() if body else None
        )
    )
    with pytest.raises(HttpError) as info:
        http(method, url, raw=data, headers={"Content-Type": "application/json"}, timeout_s=10)
    reply = info.value.body
    assert info.value.status == status, reply
    assert reply["error"] == code, reply
    assert reply["message"]
    assert cluster.is_ready("n1"), "the node keeps serving"


def test_internal_api_refuses_a_wrong_secret(cluster: Cluster) -> None:
    with pytest.raises(HttpError) as info:
        cluster.api("n1", "GET", "/internal/tablets", headers={INTERNAL_TOKEN_HEADER: "guess"})
    assert info.value.status == 401


def test_oversized_body_is_413(cluster: Cluster) -> None:
    big = b"x" * (70 * 1024 * 1024)
    with pytest.raises(HttpError) as info:
        cluster.api(
            "n1",
            "POST",
            "/v1/logs/events/tablets/0/batches",
            raw=big,
            headers={"Content-Type": "application/vnd.tabletlog.batches"},
            timeout_s=60,
        )
    assert info.value.status == 413


def test_delete_and_recreate_starts_empty(cluster: Cluster, tmp_path: Path) -> None:
    del tmp_path
    cluster.create_log("scratch", tablets=1)
    cluster.produce("scratch", [{"value": "old"}])
    cluster.api("n2", "DELETE", "/v1/logs/scratch")
    with pytest.raises(HttpError):
        cluster.describe("scratch", "n2")
    wait_until(
        lambda: "scratch" not in cluster.api("n3", "GET", "/v1/logs")["logs"],
        10,
        "the deletion reaches every node",
    )
    cluster.create_log("scratch", tablets=1)
    cluster.produce("scratch", [{"value": "new"}])
    assert [r["value"] for r in cluster.read_all("scratch", 0)] == ["new"]


def test_metrics_show_traffic_and_the_tail_cache(cluster: Cluster) -> None:
    """GET /metrics (Prometheus text) reflects what the node did: acknowledged records, the
    tablets it leads, and followers served from the tail cache."""
    cluster.produce("events", [{"value": f"m{i}", "tablet": 0} for i in range(20)])
    leader = cluster.leaders("events")[0]
    assert leader is not None

    def sample(name: str, labels: str = "") -> float:
        text = http("GET", f"{cluster.nodes[leader].url}/metrics").decode()
        prefix = f"{name}{{{labels}}} " if labels else f"{name} "
        values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(prefix)]
        assert values, f"{prefix!r} missing from /metrics"
        return values[0]

    assert sample("tabletlog_produce_records_total", 'log="events"') >= 20
    assert sample("tabletlog_tablets_led") >= 1
    assert sample("tabletlog_tablet_isr_size", 'log="events",tablet="0"') == 3
    assert sample("tabletlog_tail_cache_bytes") > 0
    # the followers fetched what was just appended: from memory, not from the file
    wait_until(
        lambda: sample("tabletlog_log_reads", 'source="memory"') > 0,
        10,
        "reads served from the tail cache",
    )
