"""Periodic local chores: high-watermark checkpoints and retention.

Checkpoints bound what a restart must re-learn (the high watermark is re-derived from the
leader anyway); retention deletes whole closed segments past a log's age or size limits.
Event-loop thread only; each chore is short and bounded.
"""

from __future__ import annotations

import asyncio
import logging
import time

from replication.replica_manager import ReplicaManager
from storage.errors import StorageError

log = logging.getLogger(__name__)


async def run_housekeeping(
    replicas: ReplicaManager,
    checkpoint_interval_s: float = 2.0,
    retention_interval_s: float = 30.0,
) -> None:
    """Run the chores forever (cancel to stop)."""
    next_retention = time.monotonic() + retention_interval_s
    while True:
        await asyncio.sleep(checkpoint_interval_s)
        replicas.reconcile()
        for replica in list(replicas.replicas.values()):
            try:
                replica.log.checkpoint()
            except StorageError as exc:
                log.warning("%s: checkpoint failed: %s", replica.tablet, exc)
        if time.monotonic() >= next_retention:
            next_retention = time.monotonic() + retention_interval_s
            for replica in list(replicas.replicas.values()):
                try:
                    deleted = replica.log.apply_retention()
                except StorageError as exc:
                    log.warning("%s: retention failed: %s", replica.tablet, exc)
                    continue
                if deleted:
                    log.info("%s: retention deleted %d segment(s)", replica.tablet, deleted)
