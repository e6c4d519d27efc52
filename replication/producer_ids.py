"""Idempotent-producer ids issued by the cluster, and the token that binds a writer to one.

Why: a producer id is visible in every batch header a consumer reads, so an id a client picks
itself can be reused by anyone, and the real producer's retry would then be answered
``duplicate: true`` for someone else's bytes. So ids are issued by the cluster
(``POST /v1/producers``, later Kafka's InitProducerId too) together with a token, an HMAC over
``(producer_id, producer_epoch)`` under a key derived from the cluster secret; every produce
request whose batches carry a producer id presents that token, and any node checks it without
coordination or state.

* ``producer_id``: random in ``[1, 2**62)``; unique without coordination (two issued ids
  collide with probability ~2**-62, and a collision needs both to write the same tablet).
* ``producer_epoch``: 0 from :func:`issue`; a later epoch of the same id (a fenced session) gets
  its own token from :func:`token_for`.
* ``producer_token``: lowercase hex of HMAC-SHA256(key, id as 8 bytes || epoch as 2 bytes, both
  big-endian signed, as in the batch header), key = HMAC-SHA256(secret, :data:`KEY_LABEL`). The
  label separates this key from every other use of the secret (internal API tokens, Raft).

Changing the cluster secret invalidates every issued token: producers must re-init (the client
does so on ``unknown_producer``). Pure; thread-safe.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import struct
from dataclasses import dataclass

PRODUCER_TOKEN_HEADER = "X-Tabletlog-Producer-Token"  # noqa: S105 - a header name, not a secret
KEY_LABEL = b"tabletlog producer ids v1"
MAX_PRODUCER_ID = (1 << 62) - 1
"""Largest id :func:`issue` returns (ids are 62-bit so they stay positive in any signed int64)."""
_ID_EPOCH = struct.Struct(">qh")  # the producer_id and producer_epoch fields of a batch header


@dataclass(frozen=True, slots=True)
class ProducerIdentity:
    """What ``POST /v1/producers`` answers: an id, its epoch and the token binding them."""

    producer_id: int
    producer_epoch: int
    producer_token: str

    def to_json(self) -> dict[str, int | str]:
        return {
            "producer_id": self.producer_id,
            "producer_epoch": self.producer_epoch,
            "producer_token": self.producer_token,
        }


def _key(secret: str) -> bytes:
    return hmac.new(secret.encode(), KEY_LABEL, hashlib.sha256).digest()


def token_for(secret: str, producer_id: int, producer_epoch: int) -> str:
    """The token of ``(producer_id, producer_epoch)`` under ``secret``.

    Raises ValueError for values a batch header cannot hold (id not in [0, 2**63), epoch not in
    [0, 2**15)).
    """
    if not 0 <= producer_id < 1 << 63 or not 0 <= producer_epoch < 1 << 15:
        raise ValueError("producer id or epoch out of range")
    message = _ID_EPOCH.pack(producer_id, producer_epoch)
    return hmac.new(_key(secret), message, hashlib.sha256).hexdigest()


def issue(secret: str) -> ProducerIdentity:
    """A new producer identity: a random id, epoch 0 and its token."""
    producer_id = secrets.randbelow(MAX_PRODUCER_ID) + 1
    return ProducerIdentity(producer_id, 0, token_for(secret, producer_id, 0))


def verify(secret: str, producer_id: int, producer_epoch: int, token: str | None) -> bool:
    """Whether ``token`` was issued for ``(producer_id, producer_epoch)`` under ``secret``.

    Constant time in the token's content; False (never an exception) for a missing or malformed
    token and for an id or epoch out of range.
    """
    if not token or not 0 <= producer_id < 1 << 63 or not 0 <= producer_epoch < 1 << 15:
        return False
    expected = token_for(secret, producer_id, producer_epoch)
    return hmac.compare_digest(token.encode("utf-8", "replace"), expected.encode())
