"""Idempotent-producer state of one log: who wrote which sequence numbers, and where they landed.

For each producer id the log keeps the producer epoch and the metadata of its last
``MAX_BATCHES`` batches (base and last sequence, base offset, exclusive end offset), updated from
batch headers only, on both append paths (followers keep it so they can deduplicate as soon as
they become leader). The leader checks every batch with a producer id against it:

* same epoch, same (base, last) sequence as a remembered batch: a retry, answered with the
  original's offsets (DuplicateSequence) and not written again;
* same epoch, base sequence == last sequence + 1 (mod 2**31): fresh, written;
* same epoch, anything else: OutOfOrderSequence; newer epoch: base sequence must be 0;
  older epoch: InvalidProducerEpoch (a zombie producer);
* unknown producer id: accepted at any sequence (a new producer, or one whose state was lost).

What is forgotten: a producer whose batches all fall below the log start offset (retention) is
dropped; ``truncate_to`` drops remembered batches at or above the truncation point, and the
producer if none is left; after a crash, producers that wrote only before the offsets covered by
the last ``producer-state`` snapshot and the scan after it are unknown. A forgotten producer's
next batch is accepted at any sequence, so a retry of a batch written long ago can be duplicated.

Checkpoint ``producer-state`` (checkpoint.py format, kind ``producer-state``): first line
``offset <N>`` (the state as of log end offset N), then one line per producer:
``<producer_id> <epoch> <base_seq>:<last_seq>:<base_offset>:<end_offset> ...`` oldest batch first.
Written when a segment is rolled and when the log is closed; loaded on open, then the batches from
N to the log end are replayed from their headers (recovery.py).

Not thread-safe: owned by one log on the event-loop thread.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from storage.errors import DuplicateSequence, InvalidProducerEpoch, OutOfOrderSequence
from wire.batch import NO_SEQUENCE, BatchHeader
from wire.limits import MAX_BATCHES

SEQUENCE_MODULUS = 1 << 31
KIND = "producer-state"


@dataclass(frozen=True, slots=True)
class BatchMetadata:
    """Where one producer batch landed: sequences inclusive, offsets [base_offset, end_offset)."""

    base_sequence: int
    last_sequence: int
    base_offset: int
    end_offset: int


@dataclass(slots=True)
class ProducerEntry:
    """A producer's epoch and its last batches, oldest first (never empty)."""

    epoch: int
    batches: deque[BatchMetadata]


def last_sequence(h: BatchHeader) -> int:
    """Sequence of the batch's last record, wrapping at 2**31 like Kafka."""
    return (h.base_sequence + h.last_offset_delta) % SEQUENCE_MODULUS


def _is_idempotent(h: BatchHeader) -> bool:
    return h.producer_id >= 0 and h.base_sequence != NO_SEQUENCE


class ProducerStateManager:
    """producer_id -> ProducerEntry, with the leader's checks and the followers' updates."""

    def __init__(self) -> None:
        self._producers: dict[int, ProducerEntry] = {}

    def __len__(self) -> int:
        return len(self._producers)

    def get(self, producer_id: int) -> ProducerEntry | None:
        """The state of ``producer_id``, or None if unknown."""
        return self._producers.get(producer_id)

    def check_request(self, headers: Sequence[BatchHeader]) -> None:
        """Check a leader append request's batches (in order) against the state.

        Returns if every batch is fresh (or has no producer id). Raises DuplicateSequence with
        the originals' range if every batch is a retry of a remembered one, OutOfOrderSequence
        on a sequence gap or a request mixing retries and new batches, InvalidProducerEpoch for
        an epoch older than the remembered one. Changes nothing.
        """
        pending: dict[int, tuple[int, int]] = {}  # producer id -> (epoch, last sequence)
        duplicates: list[BatchMetadata] = []
        for h in headers:
            if _is_idempotent(h):
                original = self._check_one(h, pending)
                if original is not None:
                    duplicates.append(original)
        if duplicates:
            if len(duplicates) == len(headers):
                raise DuplicateSequence(duplicates[0].base_offset, duplicates[-1].end_offset)
            raise OutOfOrderSequence("a request mixes retried and new batches of a producer")

    def _check_one(
        self, h: BatchHeader, pending: dict[int, tuple[int, int]]
    ) -> BatchMetadata | None:
        pid, epoch, seq = h.producer_id, h.producer_epoch, h.base_sequence
        prior = pending.get(pid)
        if prior is None:
            entry = self._producers.get(pid)
            if entry is None:
                pending[pid] = (epoch, last_sequence(h))
                return None
            if epoch == entry.epoch:
                for meta in entry.batches:
                    if meta.base_sequence == seq and meta.last_sequence == last_sequence(h):
                        return meta
            prior = (entry.epoch, entry.batches[-1].last_sequence)
        known_epoch, known_last = prior
        if epoch < known_epoch:
            raise InvalidProducerEpoch(
                f"producer {pid} epoch {epoch} is older than the current epoch {known_epoch}"
            )
        if epoch > known_epoch and seq != 0:
            raise OutOfOrderSequence(
                f"producer {pid} started epoch {epoch} at sequence {seq}, expected 0"
            )
        expected = (known_last + 1) % SEQUENCE_MODULUS
        if epoch == known_epoch and seq != expected:
            raise OutOfOrderSequence(
                f"producer {pid} epoch {epoch}: expected sequence {expected}, got {seq}"
            )
        pending[pid] = (epoch, last_sequence(h))
        return None

    def update(self, h: BatchHeader, base_offset: int, end_offset: int) -> None:
        """Record a written batch (leader or follower) that landed at [base_offset, end_offset)."""
        if not _is_idempotent(h):
            return
        entry = self._producers.get(h.producer_id)
        if entry is None or entry.epoch != h.producer_epoch:
            entry = ProducerEntry(h.producer_epoch, deque(maxlen=MAX_BATCHES))
            self._producers[h.producer_id] = entry
        meta = BatchMetadata(h.base_sequence, last_sequence(h), base_offset, end_offset)
        entry.batches.append(meta)

    def truncate_from_end(self, offset: int) -> None:
        """Forget batches at or above ``offset``, and producers left with none."""
        for pid in list(self._producers):
            batches = self._producers[pid].batches
            while batches and batches[-1].base_offset >= offset:
                batches.pop()
            if not batches:
                del self._producers[pid]

    def drop_below(self, start_offset: int) -> None:
        """Forget producers whose remembered batches all end at or below ``start_offset``."""
        gone = [p for p, e in self._producers.items() if e.batches[-1].end_offset <= start_offset]
        for pid in gone:
            del self._producers[pid]

    def clear(self) -> None:
        """Forget every producer."""
        self._producers.clear()

    def snapshot_lines(self, offset: int) -> list[str]:
        """Checkpoint lines for the state as of log end offset ``offset``."""
        lines = [f"offset {offset}"]
        for pid, entry in sorted(self._producers.items()):
            batches = " ".join(
                f"{b.base_sequence}:{b.last_sequence}:{b.base_offset}:{b.end_offset}"
                for b in entry.batches
            )
            lines.append(f"{pid} {entry.epoch} {batches}")
        return lines

    @classmethod
    def from_snapshot(cls, lines: list[str]) -> tuple[ProducerStateManager, int] | None:
        """(state, offset it is as of) from checkpoint lines, or None if they are malformed."""
        if not lines or not lines[0].startswith("offset "):
            return None
        state = cls()
        try:
            offset = int(lines[0].split()[1])
            for line in lines[1:]:
                pid_text, epoch_text, *batches = line.split()
                entry = ProducerEntry(int(epoch_text), deque(maxlen=MAX_BATCHES))
                for item in batches:
                    bs, ls, bo, eo = (int(x) for x in item.split(":"))
                    entry.batches.append(BatchMetadata(bs, ls, bo, eo))
                if not entry.batches:
                    return None
                state._producers[int(pid_text)] = entry
        except ValueError:
            return None
        return state, offset
