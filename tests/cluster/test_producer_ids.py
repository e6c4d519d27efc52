"""Idempotent-producer ids issued by the cluster cannot be hijacked (a real 3-node cluster)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from client import Client
from replication.producer_ids import PRODUCER_TOKEN_HEADER, token_for, verify
from testkit.cluster import SECRET, Cluster
from testkit.http import HttpError
from wire.batch import build_batch

pytestmark = pytest.mark.cluster
BATCHES = "application/vnd.tabletlog.batches"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with Cluster.running(tmp_path_factory.mktemp("producer-ids"), 3) as c:
        c.create_log("ids", tablets=1)
        yield c


def init(cluster: Cluster, node: str) -> dict[str, Any]:
    identity: dict[str, Any] = cluster.api(node, "POST", "/v1/producers", {})
    return identity


def produce(cluster: Cluster, node: str, batch: bytes, token: str | None) -> dict[str, Any]:
    headers = {"Content-Type": BATCHES}
    if token is not None:
        headers[PRODUCER_TOKEN_HEADER] = token
    answer: dict[str, Any] = cluster.api(
        node, "POST", "/v1/logs/ids/tablets/0/batches", raw=batch, headers=headers
    )
    return answer


def refused(cluster: Cluster, node: str, batch: bytes, token: str | None) -> HttpError:
    with pytest.raises(HttpError) as caught:
        produce(cluster, node, batch, token)
    return caught.value


def test_init_answers_an_id_epoch_and_a_token_any_node_accepts(cluster: Cluster) -> None:
    identity = init(cluster, "n1")
    assert set(identity) == {"producer_id", "producer_epoch", "producer_token"}
    assert 0 < identity["producer_id"] < 2**62 and identity["producer_epoch"] == 0
    assert verify(SECRET, identity["producer_id"], 0, identity["producer_token"])
    assert init(cluster, "n2")["producer_id"] != identity["producer_id"]
    with pytest.raises(HttpError) as caught:
        cluster.api("n1", "POST", "/v1/producers", {"producer_id": 5})
    assert caught.value.status == 400 and caught.value.code == "bad_request"


def test_a_hijack_is_refused_and_the_real_producers_retry_gets_its_own_offset(
    cluster: Cluster,
) -> None:
    real = init(cluster, "n3")
    pid = real["producer_id"]
    leader = cluster.leader_of("ids", 0)
    other = next(n for n in ("n1", "n2", "n3") if n != leader)
    mine = build_batch([(None, b"real")], producer_id=pid, producer_epoch=0, base_sequence=0)
    first = produce(cluster, other, mine, real["producer_token"])  # forwarded with its token
    assert first["duplicate"] is False
    stolen = build_batch([(None, b"evil")], producer_id=pid, producer_epoch=0, base_sequence=0)
    next_seq = build_batch([(None, b"evil")], producer_id=pid, producer_epoch=0, base_sequence=1)
    attacker = init(cluster, "n1")["producer_token"]  # a valid token, of another id
    for node in (leader, other):
        for batch in (stolen, next_seq):
            for token in (
                None,
                "",
                attacker,
                token_for("another-cluster-secret", pid, 0),
                token_for(SECRET, pid, 0)[:-2] + "00",
            ):
                error = refused(cluster, str(node), batch, token)
                assert (error.status, error.code) == (403, "unknown_producer")
    retry = produce(cluster, other, mine, real["producer_token"])
    assert retry["duplicate"] is True
    assert (retry["base_offset"], retry["end_offset"]) == (
        first["base_offset"],
        first["end_offset"],
    )
    values = [r["value"] for r in cluster.read_all("ids", 0)]
    assert values.count("real") == 1 and "evil" not in values


def test_a_self_chosen_id_and_a_mixed_request_are_refused(cluster: Cluster) -> None:
    chosen = build_batch([(None, b"x")], producer_id=12345, producer_epoch=0, base_sequence=0)
    error = refused(cluster, "n1", chosen, None)
    assert (error.status, error.code) == (403, "unknown_producer")
    real = init(cluster, "n1")
    ok = build_batch(
        [(None, b"x")], producer_id=real["producer_id"], producer_epoch=0, base_sequence=0
    )
    error = refused(cluster, "n1", ok + chosen, real["producer_token"])
    assert (error.status, error.code) == (400, "bad_request")
    plain = build_batch([(None, b"no producer")])
    assert produce(cluster, "n1", plain, None)["duplicate"] is False


def test_the_client_producer_inits_its_id_and_writes(cluster: Cluster) -> None:
    bootstrap = ",".join(f"{n.host}:{n.api_port}" for n in cluster.nodes.values())
    with Client(bootstrap) as client, client.producer("ids") as producer:
        offsets = [producer.send(f"c{i}".encode(), tablet=0) for i in range(20)]
        producer.flush()
        assert len({f.result().offset for f in offsets}) == 20
        assert producer.producer_id > 0
