"""What the deployment end-to-end tests do to a running cluster, over its public HTTP API only.

Standard library only (urllib), so it talks to containers through published ports and to nodes in
network namespaces alike. Every wait is bounded; failures say what was waited for.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")
# 421 not_leader: leadership is moving (the answer names no leader yet); retry elsewhere or later.
RETRIABLE_STATUSES = {0, 421, 502, 503, 504}


def http_json(
    method: str, url: str, body: object | None = None, timeout_s: float = 10.0
) -> tuple[int, Any]:
    """(status, decoded JSON body or None). Status 0 means no HTTP answer (refused, timed out)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, _decode(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, _decode(exc.read())
    except (urllib.error.URLError, OSError):
        return 0, None


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return raw.decode(errors="replace")


def wait_until(
    probe: Callable[[], T | None], timeout_s: float, message: str, interval_s: float = 0.25
) -> T:
    """Call ``probe`` until it returns something other than None/False; fail after timeout_s."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while True:
        last = probe()
        if last is not None and last is not False:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting until {message}")
        time.sleep(interval_s)


def ready(base_url: str) -> bool:
    return http_json("GET", f"{base_url}/readyz", timeout_s=2.0)[0] == 200


def describe(base_url: str, log: str) -> dict[str, Any] | None:
    status, body = http_json("GET", f"{base_url}/v1/logs/{log}", timeout_s=3.0)
    return body if status == 200 and isinstance(body, dict) else None


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
    status, answer = wait_until(
        lambda: _accept(http_json("POST", f"{base_url}/v1/logs", body), {201}),
        timeout_s=30,
        message=f"log {name!r} is created through {base_url}",
    )
    assert status == 201, answer
    assert isinstance(answer, dict)
    return answer


def _accept(result: tuple[int, Any], ok: set[int]) -> tuple[int, Any] | None:
    """The result when its status is in ``ok``; None (retry) on a retriable one; else fail."""
    status, body = result
    if status in ok:
        return result
    if status in RETRIABLE_STATUSES:
        return None
    raise AssertionError(f"unexpected answer {status}: {body}")


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

        last: list[tuple[int, Any]] = []

        def attempt() -> tuple[int, Any] | None:
            result = http_json("POST", url, request, timeout_s=10.0)
            last[:] = [result]
            if result[0] != 200:
                self.unknown_attempts.update(batch)
            return _accept(result, {200})

        message = f"{len(batch)} records are acknowledged by {url}"
        try:
            _, answer = wait_until(attempt, timeout_s, message)
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
        status, body = http_json("GET", url)
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
        status, body = http_json(
            "GET", f"{base_url}/v1/logs/{log}/tablets/{tablet}/replicas/{node}"
        )
        if status != 200 or not isinstance(body, dict):
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
