"""What the deployment end-to-end tests do to a running cluster, over its public HTTP API only.

HTTP through :func:`testkit.http.call` (standard library only, never raising for network
trouble), so it talks to containers through published ports and to nodes in network namespaces
alike. Every wait is a :func:`testkit.waiting.wait_until`, bounded; failures say what was waited
for, and an answer that can never turn good fails at once (``pytest.fail``).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest

from testkit.http import Answer, call
from testkit.waiting import wait_until

# 421 not_leader: leadership is moving (the answer names no leader yet); retry elsewhere or later.
RETRIABLE_STATUSES = {0, 421, 502, 503, 504}
#: Pause between two attempts of a retried request (each unknown attempt allows one more copy
#: of its values in ``Ledger.verify``, so retries are not hurried).
RETRY_INTERVAL_S = 0.25


def ready(base_url: str) -> bool:
    return call("GET", f"{base_url}/readyz", timeout_s=2.0).status == 200


def describe(base_url: str, log: str) -> dict[str, Any] | None:
    answer = call("GET", f"{base_url}/v1/logs/{log}", timeout_s=3.0)
    return answer.body if answer.status == 200 and isinstance(answer.body, dict) else None


def tablet_leader(base_url: str, log: str, tablet: int) -> tuple[str, int] | None:
    """(leader id, leader epoch) of one tablet as base_url's node describes it, if it has one."""
    described = describe(base_url, log)
    if described is None:
        return None
    for entry in described["tablets"]:
        if entry["tablet"] == tablet and entry["leader"] is not None:
            return str(entry["leader"]), int(entry["leader_epoch"])
    return None


def create_log(base_url: str, name: str, tablets: int = 3) -> dict[str, Any]:
    body = {"name": name, "tablets": tablets, "replication_factor": 3, "min_insync_replicas": 2}
    answer = wait_until(
        lambda: _accept(call("POST", f"{base_url}/v1/logs", body), {201}),
        timeout_s=30,
        message=f"log {name!r} is created through {base_url}",
        interval_s=RETRY_INTERVAL_S,
    )
    assert answer.status == 201, answer.body
    assert isinstance(answer.body, dict)
    return answer.body


def _accept(answer: Answer, ok: set[int]) -> Answer | None:
    """The answer when its status is in ``ok``; None (retry) on a retriable one; else fail at
    once (``pytest.fail`` ends the wait: a wrong answer does not turn good)."""
    if answer.status in ok:
        return answer
    if answer.status in RETRIABLE_STATUSES:
        return None
    pytest.fail(f"unexpected answer {answer.status}: {answer.body}")


@dataclass
class Ledger:
    """Every record acknowledged with acks=all, (tablet, offset) → value, and the unknown attempts.

    An attempt that got no 200 may still have been written (a 503 ``timeout`` says exactly that),
    and the retry writes the values again: each such attempt allows one more copy of its values.
    """

    acked: dict[tuple[int, int], str] = field(default_factory=dict)
    unknown_attempts: Counter[str] = field(default_factory=Counter)

    def produce(
        self, base_url: str, log: str, values: Iterable[str], timeout_s: float = 30.0
    ) -> None:
        """Produce values (one request, acks=all), retrying on 503/timeouts until acknowledged."""
        batch = list(values)
        request = {"records": [{"key": v, "value": v} for v in batch], "acks": "all"}
        url = f"{base_url}/v1/logs/{log}/records"

        last: list[Answer] = []

        def attempt() -> Answer | None:
            result = call("POST", url, request, timeout_s=10.0)
            last[:] = [result]
            if result.status != 200:
                self.unknown_attempts.update(batch)
            return _accept(result, {200})

        message = f"{len(batch)} records are acknowledged by {url}"
        try:
            answer = wait_until(attempt, timeout_s, message, interval_s=RETRY_INTERVAL_S).body
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last answer: {last[0] if last else None}") from None
        offsets = answer["offsets"]
        assert len(offsets) == len(batch), answer
        for value, position in zip(batch, offsets, strict=True):
            key = (int(position["tablet"]), int(position["offset"]))
            assert key not in self.acked, f"offset {key} acknowledged twice"
            self.acked[key] = value

    def verify(self, base_url: str, log: str, tablets: int) -> int:
        """Read every tablet from 0 to its high watermark through base_url and check the ledger.

        Every acknowledged record is at its acknowledged offset; no offset holds two records; a
        value appears at most once plus once per unknown attempt; nothing else appears. Returns
        the number of records read.
        """
        found: dict[str, list[tuple[int, int]]] = {}
        total = 0
        for tablet in range(tablets):
            for offset, value in read_tablet(base_url, log, tablet):
                found.setdefault(value, []).append((tablet, offset))
                total += 1
        acked_values = {value: where for where, value in self.acked.items()}
        lost = {where: v for where, v in self.acked.items() if where not in found.get(v, [])}
        assert not lost, f"acknowledged records lost or moved: {sorted(lost.items())[:10]}"
        for value, places in found.items():
            allowed = (value in acked_values) + self.unknown_attempts[value]
            assert allowed > 0, f"{value!r} at {places} was never produced"
            assert len(places) <= allowed, f"{value!r} {len(places)} times: {places}"
        return total


def read_tablet(
    base_url: str, log: str, tablet: int, timeout_s: float = 30.0
) -> list[tuple[int, str]]:
    """Every (offset, value) of a tablet below its high watermark, as base_url serves them."""
    out: list[tuple[int, str]] = []
    offset = 0
    deadline = time.monotonic() + timeout_s
    while True:
        url = f"{base_url}/v1/logs/{log}/tablets/{tablet}/records?offset={offset}&max_records=1000"
        reply = call("GET", url)
        status, body = reply.status, reply.body
        if status in RETRIABLE_STATUSES:
            assert time.monotonic() < deadline, f"tablet {tablet} unreadable: {status} {body}"
            time.sleep(0.25)
            continue
        assert status == 200, f"consume {url}: {status} {body}"
        out.extend((int(r["offset"]), str(r["value"])) for r in body["records"])
        offset = int(body["next_offset"])
        if offset >= int(body["high_watermark"]):
            return out


def replica_digests(urls: dict[str, str], log: str, tablet: int) -> dict[str, str] | None:
    """Each node's own digest of its replica of the tablet, asked of that node; None on failure."""
    digests: dict[str, str] = {}
    for node, base_url in urls.items():
        answer = call("GET", f"{base_url}/v1/logs/{log}/tablets/{tablet}/replicas/{node}")
        body = answer.body
        if answer.status != 200 or not isinstance(body, dict):
            return None
        digests[node] = f"{body['high_watermark']}:{body['digest']}"
    return digests


def converged(urls: dict[str, str], log: str, tablets: int) -> bool:
    """True when, for every tablet, all replicas report the same high watermark and digest."""
    for tablet in range(tablets):
        digests = replica_digests(urls, log, tablet)
        if digests is None or len(set(digests.values())) != 1:
            return False
    return True
