"""The produce request's producer check (node/producer_api.py): table-driven, no server."""

from __future__ import annotations

import pytest

from node.http_errors import ApiError
from node.producer_api import check_produce_request
from replication.producer_ids import token_for
from wire.batch import build_batch
from wire.errors import CorruptBatch

SECRET = "cluster-secret-1"
PID = 1234567


def batch(producer_id: int = -1, epoch: int = -1, sequence: int = -1) -> bytes:
    return build_batch(
        [(None, b"v")], producer_id=producer_id, producer_epoch=epoch, base_sequence=sequence
    )


GOOD = token_for(SECRET, PID, 0)


@pytest.mark.parametrize(
    ("body", "token", "outcome"),
    [
        (batch(), None, None),  # no producer: no token needed
        (batch() + batch(), "ignored", None),  # a token without producer is not passed on
        (batch(PID, 0, 0), GOOD, GOOD),
        (batch(PID, 0, 0) + batch(PID, 0, 1), GOOD, GOOD),
        (batch(PID, 0, -1), GOOD, GOOD),  # a producer id without sequence is still checked
        (batch(PID, 0, 0), None, "unknown_producer"),
        (batch(PID, 0, 0), "", "unknown_producer"),
        (batch(PID, 0, 0), token_for(SECRET, PID + 1, 0), "unknown_producer"),
        (batch(PID, 1, 0), GOOD, "unknown_producer"),  # the token of epoch 0 only
        (batch(PID, 0, 0), token_for("another-cluster", PID, 0), "unknown_producer"),
        (batch(PID, -1, 0), GOOD, "unknown_producer"),
        (batch(-5, 0, 0), GOOD, "bad_request"),
        (batch(PID, 0, 0) + batch(PID + 1, 0, 0), GOOD, "bad_request"),  # two producers
        (batch(PID, 0, 0) + batch(), GOOD, "bad_request"),  # with and without producer
        (batch() + batch(PID, 0, 0), GOOD, "bad_request"),
        (batch(PID, 0, 0) + batch(PID, 1, 0), GOOD, "bad_request"),  # two epochs
    ],
)
def test_check_produce_request(body: bytes, token: str | None, outcome: str | None) -> None:
    if outcome is None or outcome == GOOD:
        assert check_produce_request(SECRET, body, token) == outcome
    else:
        with pytest.raises(ApiError) as raised:
            check_produce_request(SECRET, body, token)
        assert raised.value.error_code == outcome


@pytest.mark.parametrize("body", [b"x" * 10, batch(PID, 0, 0)[:-1], batch() + b"\0"])
def test_bytes_that_are_not_whole_batches_are_corrupt(body: bytes) -> None:
    with pytest.raises(CorruptBatch):
        check_produce_request(SECRET, body, GOOD)
