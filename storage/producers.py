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

Bounds (anyone may init producer ids, so the state must not grow with them): at most
``max_producers`` ids per log, the least recently written evicted first (Kafka bounds nothing
per partition; this is cheap insurance), and ids whose last write (the leader's append time of
their newest batch) is ``expiration_ms`` or more before the clock are expired (Kafka's
``producer.id.expiration.ms``) whenever the state is snapshotted (roll, close) and after it is
loaded. Both count in ``evicted`` / ``expired``. The dict is kept in least-recently-written
order, so eviction is O(1) and a snapshot restores that order.

Checkpoint ``producer-state`` (checkpoint.py format, kind ``producer-state``): first line
``offset <N>`` (the state as of log end offset N), then one line per producer, least recently
written first: ``<producer_id> <epoch> <last_write_ms> <base_seq>:<last_seq>:<base_offset>:
<end_offset> ...`` oldest batch first (files written before the bounds existed lack
``<last_write_ms>``: their producers count as written when loaded). Written when a segment is
rolled and when the log is closed; loaded on open, then the batches from N to the log end are
replayed from their headers (recovery.py).

Not thread-safe: owned by one log on the event-loop thread.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from storage.errors import DuplicateSequence, InvalidProducerEpoch, OutOfOrderSequence
from wire.batch import NO_SEQUENCE, BatchHeader
from wire.limits import MAX_BATCHES

log = logging.getLogger(__name__)

SEQUENCE_MODULUS = 1 << 31
KIND = "producer-state"
DEFAULT_MAX_PRODUCERS = 10_000
DEFAULT_EXPIRATION_MS = 24 * 3600 * 1000  # Kafka's producer.id.expiration.ms
_LOG_EVICTIONS_EVERY = 1000  # an eviction storm logs one line per this many evictions


def wall_clock_ms() -> int:
    """Milliseconds since the Unix epoch (the default clock of expiry)."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class BatchMetadata:
    """Where one producer batch landed: sequences inclusive, offsets [base_offset, end_offset)."""

    base_sequence: int
    last_sequence: int
    base_offset: int
    end_offset: int


@dataclass(slots=True)
class ProducerEntry:
    """A producer's epoch, its last batches (oldest first, never empty) and when it last wrote
    (ms since the epoch: the leader's append time of its newest batch)."""

    epoch: int
    batches: deque[BatchMetadata]
    last_write_ms: int = 0


def last_sequence(h: BatchHeader) -> int:
    """Sequence of the batch's last record, wrapping at 2**31 like Kafka."""
    return (h.base_sequence + h.last_offset_delta) % SEQUENCE_MODULUS


def _is_idempotent(h: BatchHeader) -> bool:
    return h.producer_id >= 0 and h.base_sequence != NO_SEQUENCE


class ProducerStateManager:
    """producer_id -> ProducerEntry, with the leader's checks and the followers' updates.

    ``max_producers`` and ``expiration_ms`` (None: never) bound the state (module docstring);
    ``clock_ms`` is read only by :meth:`expire_idle` and when loading an old snapshot.
    """

    def __init__(
        self,
        *,
        max_producers: int = DEFAULT_MAX_PRODUCERS,
        expiration_ms: int | None = DEFAULT_EXPIRATION_MS,
        clock_ms: Callable[[], int] = wall_clock_ms,
    ) -> None:
        if max_producers < 1:
            raise ValueError("max_producers must be positive")
        if expiration_ms is not None and expiration_ms <= 0:
            raise ValueError("expiration_ms must be positive or None")
        self._producers: dict[int, ProducerEntry] = {}  # least recently written first
        self._max_producers = max_producers
        self._expiration_ms = expiration_ms
        self._clock_ms = clock_ms
        self.evicted = 0  # producers forgotten because the state was full (since open)
        self.expired = 0  # producers forgotten because they were idle (since open)

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

    def update(
        self, h: BatchHeader, base_offset: int, end_offset: int, append_time_ms: int
    ) -> None:
        """Record a written batch (leader or follower) that landed at [base_offset, end_offset)
        at ``append_time_ms``; evicts the least recently written producer beyond the bound."""
        if not _is_idempotent(h):
            return
        producers = self._producers
        entry = producers.pop(h.producer_id, None)  # re-inserted last: most recently written
        if entry is None or entry.epoch != h.producer_epoch:
            entry = ProducerEntry(h.producer_epoch, deque(maxlen=MAX_BATCHES))
        producers[h.producer_id] = entry
        meta = BatchMetadata(h.base_sequence, last_sequence(h), base_offset, end_offset)
        entry.batches.append(meta)
        entry.last_write_ms = max(entry.last_write_ms, append_time_ms)
        if len(producers) > self._max_producers:
            del producers[next(iter(producers))]
            self.evicted += 1
            if self.evicted % _LOG_EVICTIONS_EVERY == 1:
                log.warning(
                    "producer state full (%d ids): evicting the least recently written "
                    "(%d evicted so far); their retries are no longer recognised",
                    self._max_producers,
                    self.evicted,
                )

    def expire_idle(self) -> int:
        """Forget producers whose last write is ``expiration_ms`` or more before the clock;
        return how many."""
        if self._expiration_ms is None or not self._producers:
            return 0
        cutoff = self._clock_ms() - self._expiration_ms
        gone = [p for p, e in self._producers.items() if e.last_write_ms <= cutoff]
        for pid in gone:
            del self._producers[pid]
        self.expired += len(gone)
        return len(gone)

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
        """Checkpoint lines for the state as of log end offset ``offset`` (LRU order)."""
        lines = [f"offset {offset}"]
        for pid, entry in self._producers.items():
            batches = " ".join(
                f"{b.base_sequence}:{b.last_sequence}:{b.base_offset}:{b.end_offset}"
                for b in entry.batches
            )
            lines.append(f"{pid} {entry.epoch} {entry.last_write_ms} {batches}")
        return lines

    def load_snapshot(self, lines: list[str]) -> int | None:
        """Replace the state by checkpoint lines; return the offset they are as of, or None
        (the state left empty) if they are malformed. Keeps at most ``max_producers`` (the
        most recently written, the file's last lines)."""
        self._producers.clear()
        if not lines or not lines[0].startswith("offset "):
            return None
        loaded_at: int | None = None
        try:
            offset = int(lines[0].split()[1])
            for line in lines[1:]:
                pid_text, epoch_text, *rest = line.split()
                if rest and ":" not in rest[0]:
                    last_write_ms = int(rest.pop(0))
                else:  # a file from before the bounds: count it as written now
                    loaded_at = self._clock_ms() if loaded_at is None else loaded_at
                    last_write_ms = loaded_at
                entry = ProducerEntry(int(epoch_text), deque(maxlen=MAX_BATCHES), last_write_ms)
                for item in rest:
                    bs, ls, bo, eo = (int(x) for x in item.split(":"))
                    entry.batches.append(BatchMetadata(bs, ls, bo, eo))
                if not entry.batches:
                    self._producers.clear()
                    return None
                self._producers.pop(int(pid_text), None)
                self._producers[int(pid_text)] = entry
        except ValueError:
            self._producers.clear()
            return None
        while len(self._producers) > self._max_producers:
            del self._producers[next(iter(self._producers))]
            self.evicted += 1
        return offset
