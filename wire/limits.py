"""Limits that producer, leader and follower must agree on. Thread-safe (constants)."""

from __future__ import annotations

from wire.batch import MAX_BATCH_BYTES

#: Batches a leader remembers per idempotent producer and tablet: a producer may keep at most
#: this many batches in flight and still have every retry recognised as a duplicate.
MAX_BATCHES = 5

__all__ = ["MAX_BATCHES", "MAX_BATCH_BYTES"]
