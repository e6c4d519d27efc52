"""Issued producer ids and their tokens (replication/producer_ids.py)."""

from __future__ import annotations

import pytest

from replication.producer_ids import MAX_PRODUCER_ID, issue, token_for, verify

SECRET = "cluster-secret-1"


def test_issued_ids_are_positive_62_bit_and_distinct_with_epoch_0() -> None:
    identities = [issue(SECRET) for _ in range(200)]
    assert len({i.producer_id for i in identities}) == 200
    assert all(1 <= i.producer_id <= MAX_PRODUCER_ID < 2**62 for i in identities)
    assert all(i.producer_epoch == 0 for i in identities)
    assert all(verify(SECRET, i.producer_id, 0, i.producer_token) for i in identities)


def test_the_token_is_deterministic_hex_and_depends_on_id_epoch_and_secret() -> None:
    token = token_for(SECRET, 42, 0)
    assert token == token_for(SECRET, 42, 0)
    assert len(token) == 64 and int(token, 16) >= 0
    others = {token_for(SECRET, 43, 0), token_for(SECRET, 42, 1), token_for("other-secret", 42, 0)}
    assert token not in others and len(others) == 3


@pytest.mark.parametrize(
    ("secret", "producer_id", "epoch", "token", "valid"),
    [
        (SECRET, 42, 0, token_for(SECRET, 42, 0), True),
        (SECRET, 42, 3, token_for(SECRET, 42, 3), True),
        (SECRET, 43, 0, token_for(SECRET, 42, 0), False),  # another producer's token
        (SECRET, 42, 1, token_for(SECRET, 42, 0), False),  # the token of another epoch
        ("other-secret", 42, 0, token_for(SECRET, 42, 0), False),  # another cluster's
        (SECRET, 42, 0, None, False),
        (SECRET, 42, 0, "", False),
        (SECRET, 42, 0, token_for(SECRET, 42, 0)[:-1], False),  # truncated
        (SECRET, 42, 0, token_for(SECRET, 42, 0).upper(), False),
        (SECRET, 42, 0, "\udcff" * 64, False),  # a lone surrogate (from a hostile header)
        (SECRET, -1, 0, token_for(SECRET, 0, 0), False),
        (SECRET, 42, -1, token_for(SECRET, 42, 0), False),
        (SECRET, 2**63, 0, token_for(SECRET, 0, 0), False),
        (SECRET, 42, 2**15, token_for(SECRET, 42, 0), False),
    ],
)
def test_verify(secret: str, producer_id: int, epoch: int, token: str | None, valid: bool) -> None:
    assert verify(secret, producer_id, epoch, token) is valid


@pytest.mark.parametrize(("producer_id", "epoch"), [(-1, 0), (2**63, 0), (1, -1), (1, 2**15)])
def test_token_for_refuses_values_a_batch_header_cannot_hold(producer_id: int, epoch: int) -> None:
    with pytest.raises(ValueError, match="out of range"):
        token_for(SECRET, producer_id, epoch)
