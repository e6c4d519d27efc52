"""The workload of a fault-injection run: concurrent acks=all writers and polling readers.

Writers (threads) each own one tablet and send produce requests of 1..``batch_max`` records with
values unique across the run (``<attempt id>-<i>``), through a node chosen at random (any node
forwards to the tablet leader). Half the writers name the tablet explicitly; the others rely on
key routing, with keys chosen to hash to their tablet. Every attempt is recorded with its outcome:

* ``ok`` — 200, with the (tablet, offset) of each record;
* ``fail`` — definitely not written: a 4xx, a 503 ``not_enough_replicas`` or ``no_leader``
  (docs/architecture.md#errors), or a refused connection (nothing was sent);
* ``info`` — unknown: a 503 ``timeout`` (or any other 5xx), a client-side timeout, a reset.

After a failure a writer backs off briefly and writes new values under a new attempt id (values
are never resent, so the checker can tell every attempt apart).

Idempotent writers (one per tablet by default) use the binary endpoint as an idempotent producer
would: a producer id, and per batch a base sequence; after any failure they resend the *same*
batch (same bytes, same sequence) until it is acknowledged, so each of their values must end up
exactly once. Their attempt is the logical batch: ``ok`` once acknowledged (``sends`` says how
many requests it took), ``info`` if the run ended while it was still unknown.

Readers (threads, one per tablet) long-poll the JSON consume endpoint from their next offset,
through a random node, and record every answer with the time it was seen.

Standard library HTTP only (urllib, through :func:`testkit.http.call`): nothing here
depends on the product's client. What is read back after the run (the final read, each
replica's view) is in :mod:`tests.faults.final_state`.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from testkit.http import call
from testkit.waiting import wait_until
from tests.faults.answers import BATCHES_CONTENT_TYPE, classify, error_code, record_value
from tests.faults.final_state import final_read, replica_states
from tests.faults.history import Attempt, Outcome, Read
from wire.batch import build_batch
from wire.partitioning import tablet_for_key

__all__ = [
    "RunClock",
    "Workload",
    "WorkloadConfig",
    "final_read",
    "keys_for",
    "replica_states",
]


class RunClock:
    """Seconds since the run started (monotonic), shared by the workload and the nemeses."""

    def __init__(self) -> None:
        self._t0 = time.monotonic()

    def __call__(self) -> float:
        return time.monotonic() - self._t0


def keys_for(tablet: int, tablets: int, count: int, prefix: str) -> list[str]:
    """``count`` keys that route to ``tablet`` (crc32c(key) % tablets)."""
    keys: list[str] = []
    n = 0
    while len(keys) < count:
        key = f"{prefix}{n}"
        if tablet_for_key(key.encode(), tablets) == tablet:
            keys.append(key)
        n += 1
    return keys


@dataclass
class WorkloadConfig:
    writers_per_tablet: int = 2
    idempotent_writers_per_tablet: int = 1
    batch_max: int = 4
    pace_s: float = 0.01  # pause after each acknowledged write (keeps the 2-core box usable)
    backoff_s: float = 0.1  # pause after a failed or unknown attempt
    server_timeout_ms: int = 5000  # the produce's timeout_ms
    client_timeout_s: float = 10.0  # socket timeout of a produce
    poll_wait_ms: int = 500
    poll_max_records: int = 500


class Workload:
    """Writers and readers against one log; ``attempts`` and ``reads`` are the history."""

    def __init__(
        self,
        urls: Mapping[str, str],
        log: str,
        tablets: int,
        *,
        seed: int,
        clock: RunClock,
        config: WorkloadConfig | None = None,
    ) -> None:
        self.urls = dict(urls)
        self.log = log
        self.tablets = tablets
        self.seed = seed
        self.clock = clock
        self.config = config or WorkloadConfig()
        self.attempts: list[Attempt] = []
        self.reads: list[Read] = []
        self.read_errors: Counter[str] = Counter()
        self.reader_offsets: dict[int, int] = dict.fromkeys(range(tablets), 0)
        self._stop_writers = threading.Event()
        self._stop_readers = threading.Event()
        self._writers: list[threading.Thread] = []
        self._readers: list[threading.Thread] = []
        self._lock = threading.Lock()
        self.crashed: list[str] = []

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        writer = 0
        for tablet in range(self.tablets):
            for _ in range(self.config.writers_per_tablet):
                explicit = writer % 2 == 0
                self._writers.append(
                    self._thread(f"writer-{writer}", self._write_loop, writer, tablet, explicit)
                )
                writer += 1
            for _ in range(self.config.idempotent_writers_per_tablet):
                self._writers.append(
                    self._thread(f"writer-{writer}", self._idempotent_loop, writer, tablet)
                )
                writer += 1
            self._readers.append(self._thread(f"reader-{tablet}", self._read_loop, tablet))
        for thread in (*self._writers, *self._readers):
            thread.start()

    def _thread(self, name: str, target: Callable[..., None], *args: Any) -> threading.Thread:
        def run() -> None:
            try:
                target(*args)
            except BaseException as exc:  # a bug in the workload itself: surface it
                with self._lock:
                    self.crashed.append(f"{name}: {exc!r}")
                raise

        return threading.Thread(target=run, name=name, daemon=True)

    def stop_writers(self) -> None:
        """Stop writing; waits for in-flight attempts (at most one client timeout)."""
        self._stop_writers.set()
        for thread in self._writers:
            thread.join(self.config.client_timeout_s + 5)
        assert not any(t.is_alive() for t in self._writers), "a writer did not stop"

    def finish_readers(self, targets: Mapping[int, int], timeout_s: float = 30.0) -> bool:
        """Let readers catch up to ``targets`` (tablet → offset), then stop them.

        Returns whether they all got there in time.
        """
        try:
            wait_until(
                lambda: all(self.reader_offsets[t] >= o for t, o in targets.items()),
                timeout_s,
                "readers caught up with the final high watermarks",
            )
            caught_up = True
        except AssertionError:
            caught_up = False
        self._stop_readers.set()
        for thread in self._readers:
            thread.join(self.config.poll_wait_ms / 1000 + 10)
        return caught_up

    def stop(self) -> None:
        """Stop everything at once (cleanup after a failure)."""
        self._stop_writers.set()
        self._stop_readers.set()
        for thread in (*self._writers, *self._readers):
            thread.join(self.config.client_timeout_s + 5)

    def acked_count(self) -> int:
        return sum(1 for a in self.attempts if a.outcome == "ok")

    def acked_since(self, t: float) -> dict[int, int]:
        """Per tablet, attempts acknowledged that started at or after run time ``t``."""
        counts = dict.fromkeys(range(self.tablets), 0)
        for attempt in list(self.attempts):
            if attempt.outcome == "ok" and attempt.started >= t:
                counts[attempt.tablet] += 1
        return counts

    # ------------------------------------------------------------------ writers

    def _write_loop(self, writer: int, tablet: int, explicit: bool) -> None:
        rng = random.Random(self.seed * 1000 + writer)
        keys = keys_for(tablet, self.tablets, 8, f"w{writer}k")
        nodes = sorted(self.urls)
        cfg = self.config
        n = 0
        while not self._stop_writers.is_set():
            attempt_id = f"w{writer}-{n}"
            n += 1
            values = tuple(f"{attempt_id}-{i}" for i in range(rng.randint(1, cfg.batch_max)))
            key = rng.choice(keys)
            records: list[dict[str, Any]] = [{"key": key, "value": v} for v in values]
            if explicit:
                for record in records:
                    record["tablet"] = tablet
            node = rng.choice(nodes)
            url = f"{self.urls[node]}/v1/logs/{self.log}/records?timeout_ms={cfg.server_timeout_ms}"
            started = self.clock()
            answer = call(
                "POST", url, {"records": records, "acks": "all"}, timeout_s=cfg.client_timeout_s
            )
            finished = self.clock()
            outcome = classify(answer)
            acked: tuple[tuple[int, int], ...] = ()
            error = ""
            if outcome == "ok":
                acked = tuple((int(p["tablet"]), int(p["offset"])) for p in answer.body["offsets"])
            else:
                message = answer.body.get("message", "") if isinstance(answer.body, dict) else ""
                error = f"{answer.status} {error_code(answer)} {message}".strip()
            with self._lock:
                self.attempts.append(
                    Attempt(
                        attempt_id, tablet, values, outcome, acked, started, finished, node, error
                    )
                )
            time.sleep(cfg.pace_s if outcome == "ok" else cfg.backoff_s)

    def _init_producer(self, rng: random.Random, nodes: list[str]) -> tuple[int, int, str] | None:
        """(id, epoch, token) from ``POST /v1/producers`` of any node that answers; None once
        the writers stop."""
        while not self._stop_writers.is_set():
            answer = call("POST", f"{self.urls[rng.choice(nodes)]}/v1/producers", {}, timeout_s=5)
            if answer.status == 200 and isinstance(answer.body, dict):
                body = answer.body
                return (
                    int(body["producer_id"]),
                    int(body["producer_epoch"]),
                    str(body["producer_token"]),
                )
            time.sleep(self.config.backoff_s)
        return None

    def _idempotent_loop(self, writer: int, tablet: int) -> None:
        rng = random.Random(self.seed * 1000 + writer)
        nodes = sorted(self.urls)
        identity = self._init_producer(rng, nodes)
        if identity is None:
            return
        producer_id, producer_epoch, token = identity
        cfg = self.config
        sequence = 0
        n = 0
        while not self._stop_writers.is_set():
            attempt_id = f"w{writer}-{n}"
            n += 1
            values = tuple(f"{attempt_id}-{i}" for i in range(rng.randint(1, cfg.batch_max)))
            key = f"w{writer}k{n % 8}".encode()
            batch = build_batch(
                [(key, v.encode()) for v in values],
                create_time_ms=int(time.time() * 1000),
                producer_id=producer_id,
                producer_epoch=producer_epoch,
                base_sequence=sequence,
            )
            started = self.clock()
            sends = 0
            outcome: Outcome = "info"
            acked: tuple[tuple[int, int], ...] = ()
            errors: list[str] = []
            maybe_written = False  # an earlier send's outcome is unknown
            node = ""
            while True:
                node = rng.choice(nodes)
                url = (
                    f"{self.urls[node]}/v1/logs/{self.log}/tablets/{tablet}/batches"
                    f"?acks=all&timeout_ms={cfg.server_timeout_ms}"
                )
                sends += 1
                answer = call(
                    "POST",
                    url,
                    raw=batch,
                    headers={
                        "Content-Type": BATCHES_CONTENT_TYPE,
                        "X-Tabletlog-Producer-Token": token,
                    },
                    timeout_s=cfg.client_timeout_s,
                )
                if answer.status == 200:
                    base = int(answer.body["base_offset"])
                    acked = tuple((tablet, base + i) for i in range(len(values)))
                    outcome = "ok"
                    if answer.body.get("duplicate"):
                        errors.append("200 duplicate")
                    break
                message = answer.body.get("message", "") if isinstance(answer.body, dict) else ""
                errors.append(f"{answer.status} {error_code(answer)} {message}".strip())
                if 400 <= answer.status < 500 and answer.status not in (404, 421):
                    # bad_request / out_of_order_sequence: the leader refuses this batch.
                    outcome = "info" if maybe_written else "fail"
                    break
                maybe_written = maybe_written or classify(answer) == "info"
                if self._stop_writers.is_set():
                    break  # unknown: the last send may or may not have been written
                time.sleep(cfg.backoff_s)
            with self._lock:
                self.attempts.append(
                    Attempt(
                        attempt_id,
                        tablet,
                        values,
                        outcome,
                        acked,
                        started,
                        self.clock(),
                        node,
                        "; ".join(errors[-3:]),
                        sends,
                    )
                )
            if outcome != "ok":
                # Refused, or given up: start a new producer session.
                identity = self._init_producer(rng, nodes)
                if identity is None:
                    return
                producer_id, producer_epoch, token = identity
                sequence = 0
            elif outcome == "ok":
                sequence += len(values)
            time.sleep(cfg.pace_s)

    # ------------------------------------------------------------------ readers

    def _read_loop(self, tablet: int) -> None:
        rng = random.Random(self.seed * 1000 + 500 + tablet)
        nodes = sorted(self.urls)
        cfg = self.config
        reader = f"reader-{tablet}"
        while not self._stop_readers.is_set():
            offset = self.reader_offsets[tablet]
            node = rng.choice(nodes)
            url = (
                f"{self.urls[node]}/v1/logs/{self.log}/tablets/{tablet}/records?offset="
                f"{offset}&wait_ms={cfg.poll_wait_ms}&max_records={cfg.poll_max_records}"
            )
            answer = call("GET", url, timeout_s=cfg.poll_wait_ms / 1000 + 4)
            at = self.clock()
            if answer.status != 200 or not isinstance(answer.body, dict):
                with self._lock:
                    self.read_errors[error_code(answer)] += 1
                time.sleep(0.1)
                continue
            records = tuple((int(r["offset"]), record_value(r)) for r in answer.body["records"])
            with self._lock:
                self.reads.append(Read(reader, tablet, offset, records, at))
            if records:
                self.reader_offsets[tablet] = records[-1][0] + 1
