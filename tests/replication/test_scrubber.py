"""Scrubber: bounded rounds over every replica's file, corruption reported, reruns later."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from replication.model import TabletId
from replication.replica_manager import ReplicaManager
from replication.scrubber import Scrubber
from storage.config import LogConfig
from storage.errors import CorruptSegment
from storage.log import TabletLog
from wire.batch import build_batch


@dataclass
class _Replica:
    log: TabletLog


@dataclass
class _Replicas:
    """What the scrubber uses of a ReplicaManager: the replicas and the corruption report."""

    replicas: dict[TabletId, Any] = field(default_factory=dict)
    reported: list[tuple[TabletId, CorruptSegment]] = field(default_factory=list)

    def on_corruption(self, tablet: TabletId, exc: CorruptSegment) -> None:
        self.reported.append((tablet, exc))


class _Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def _filled_log(directory: Path, batches: int) -> TabletLog:
    log = TabletLog.open(directory, LogConfig(segment_bytes=64 * 1024, fsync="never"))
    for i in range(batches):
        log.append_as_leader(build_batch([(None, b"%05d" % i * 200)]), leader_epoch=0)
    log.flush()
    return log


def test_rounds_are_bounded_and_cover_every_replica(tmp_path: Path) -> None:
    fake = _Replicas()
    for index in range(2):
        fake.replicas[TabletId("events", index)] = _Replica(_filled_log(tmp_path / str(index), 300))
    total = sum(r.log.size_bytes for r in fake.replicas.values())
    clock = _Clock()
    scrubber = Scrubber(cast(ReplicaManager, fake), bytes_per_round=16 * 1024, clock=clock)
    rounds = 0
    while scrubber.bytes_verified < total:
        before = scrubber.bytes_verified
        scrubber.step()
        rounds += 1
        assert scrubber.bytes_verified - before <= 16 * 1024 + 1100  # + at most one batch
        assert rounds < 1000, "the scrubber stopped making progress"
    assert scrubber.bytes_verified == total and fake.reported == []
    scrubber.step()  # finished: nothing more until rescrub_after_s
    assert scrubber.bytes_verified == total
    clock.now += 3601
    scrubber.step()
    assert scrubber.bytes_verified > total  # started over


def test_a_flipped_bit_on_disk_is_reported(tmp_path: Path) -> None:
    fake = _Replicas()
    tablet = TabletId("events", 0)
    log = _filled_log(tmp_path, 300)
    fake.replicas[tablet] = _Replica(log)
    first = sorted(tmp_path.glob("*.log"))[0]  # a closed segment
    data = bytearray(first.read_bytes())
    data[len(data) // 2] ^= 0x40
    first.write_bytes(bytes(data))
    scrubber = Scrubber(cast(ReplicaManager, fake), bytes_per_round=1 << 20, clock=_Clock())
    scrubber.step()
    assert scrubber.corruptions_found == 1
    assert [t for t, _ in fake.reported] == [tablet]
