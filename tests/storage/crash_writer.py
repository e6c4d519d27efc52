"""Writer process for test_crash.py: appends with ``fsync: always`` through GroupCommitter and
prints one line per acknowledged append, ``<base_offset> <end_offset> <sha256 of the bytes the
producer wrote>``, flushed at once, until it is killed.

Run as ``python -m tests.storage.crash_writer DIR SEED``.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import sys
from pathlib import Path

from storage.config import LogConfig
from storage.group_commit import GroupCommitter
from storage.log import TabletLog
from wire.batch import CRC_POS, build_batch

CONFIG = LogConfig(segment_bytes=64 * 1024, index_interval_bytes=1024, fsync="always")
APPENDERS = 4


def producer_digest(batch: bytes) -> str:
    """Digest of what the producer wrote (everything after the leader-stamped prefix)."""
    return hashlib.sha256(batch[CRC_POS:]).hexdigest()


async def appender(log: TabletLog, committer: GroupCommitter, rng: random.Random) -> None:
    while True:
        records = [(None, rng.randbytes(rng.randint(0, 3000))) for _ in range(rng.randint(1, 8))]
        batch = build_batch(records)
        result = log.append_as_leader(batch, 0)
        await committer.wait_durable(result.end_offset)
        sys.stdout.write(f"{result.base_offset} {result.end_offset} {producer_digest(batch)}\n")
        sys.stdout.flush()


async def main(directory: Path, seed: int) -> None:
    log = TabletLog.open(directory, CONFIG)
    committer = GroupCommitter(log)
    rngs = [random.Random(seed * 100 + i) for i in range(APPENDERS)]
    await asyncio.gather(*(appender(log, committer, rng) for rng in rngs))


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2])))
