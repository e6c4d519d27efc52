"""The durable Raft journal: what pysyncobj is told survives a crash does, torn tails are cut,
and a compaction interrupted by a crash is finished instead of losing entries."""

from __future__ import annotations

import json
import pickle
import zlib
from pathlib import Path

import pytest

from replication.raft_journal import MAGIC, DurableJournal, Entry
from replication.raft_state import (
    SNAPSHOT_MAGIC,
    _create_journal,
    decode_snapshot,
    encode_snapshot,
)


def entry(idx: int, term: int = 1) -> Entry:
    return (b"\x00cmd-%d" % idx, idx, term)


def filled(path: Path, count: int, **kwargs: object) -> DurableJournal:
    journal = DurableJournal(path, **kwargs)  # type: ignore[arg-type]
    for i in range(1, count + 1):
        journal.add(*entry(i))
    return journal


def test_entries_term_and_vote_survive_reopening(tmp_path: Path) -> None:
    journal = filled(tmp_path / "journal", 5)
    journal.setCurrentTerm(7, "127.0.0.1:9")
    journal.setRaftCommitIndex(4)
    journal._destroy()  # pysyncobj's close: also stores the lazy commit index
    again = DurableJournal(tmp_path / "journal")
    assert [again[i] for i in range(len(again))] == [entry(i) for i in range(1, 6)]
    assert again[-1] == entry(5) and again[1:3] == [entry(2), entry(3)]
    assert (again.getCurrentTerm(), again.getVotedForNodeId()) == (7, "127.0.0.1:9")
    assert again.getRaftCommitIndex() == 4


def test_term_and_vote_are_on_disk_before_the_call_returns(tmp_path: Path) -> None:
    journal = DurableJournal(tmp_path / "journal")
    journal.setCurrentTerm(3, None)
    meta = json.loads((tmp_path / "journal.meta").read_text())
    assert meta["term"] == 3 and meta["voted_for"] is None


@pytest.mark.parametrize("cut", [1, 5, 17])
def test_torn_tail_is_cut_on_open(tmp_path: Path, cut: int) -> None:
    path = tmp_path / "journal"
    filled(path, 4)._destroy()
    data = path.read_bytes()
    path.write_bytes(data[:-cut])
    again = DurableJournal(path)
    assert len(again) == 3 and again[-1] == entry(3)
    again.add(*entry(4))
    assert len(DurableJournal(path)) == 4


def test_corrupt_record_ends_the_journal(tmp_path: Path) -> None:
    path = tmp_path / "journal"
    filled(path, 4)._destroy()
    data = bytearray(path.read_bytes())
    data[len(MAGIC) + 40] ^= 0xFF  # inside the second record
    path.write_bytes(bytes(data))
    assert len(DurableJournal(path)) == 1


def test_truncation_and_prefix_cut(tmp_path: Path) -> None:
    path = tmp_path / "journal"
    journal = filled(path, 6)
    journal.deleteEntriesFrom(4)  # drop entries 5 and 6 (positions 4, 5)
    journal.add(*entry(5, term=2))
    journal.deleteEntriesTo(2)  # forget entries 1 and 2
    expected = [entry(3), entry(4), entry(5, term=2)]
    assert [journal[i] for i in range(len(journal))] == expected
    reopened = DurableJournal(path)
    assert [reopened[i] for i in range(len(reopened))] == expected
    reopened.clear()
    assert len(DurableJournal(path)) == 0


def test_interrupted_compaction_is_finished_not_lost(tmp_path: Path) -> None:
    """Snapshot written at entries (3, 4), killed before the journal cut: entry 5 must stay."""
    path, dump = tmp_path / "journal", tmp_path / "dump"
    filled(path, 5)._destroy()
    dump.write_bytes(
        encode_snapshot({"state": {}, "prev": entry(3), "last": entry(4), "cluster": []})
    )
    journal = _create_journal(str(path))
    assert [journal[i] for i in range(len(journal))] == [entry(3), entry(4), entry(5)]
    # a snapshot that is not in the journal (installed from the leader) changes nothing here
    dump.write_bytes(
        encode_snapshot({"state": {}, "prev": entry(8), "last": entry(9), "cluster": []})
    )
    assert len(_create_journal(str(path))) == 3


def test_snapshots_refuse_globals_and_damage() -> None:
    good = encode_snapshot(
        {"state": {("x", 0): {1, 2}}, "prev": entry(1), "last": entry(2), "cluster": ["a:1"]}
    )
    assert decode_snapshot(good)["state"] == {("x", 0): {1, 2}}
    with pytest.raises(ValueError, match="checksum"):
        decode_snapshot(good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(ValueError, match="not a tabletlog"):
        decode_snapshot(b"garbage")
    # a snapshot naming a callable is refused even with a valid checksum
    evil = pickle.dumps({"state": {}, "x": print}, protocol=5)
    forged = SNAPSHOT_MAGIC + zlib.crc32(evil).to_bytes(4, "little") + evil
    with pytest.raises(ValueError, match="may not reference"):
        decode_snapshot(forged)
