"""The transport seam for unit tests: scripted HTTP answers, every request recorded.

``FakeTransport`` implements ``client.transport.Transport``; a test gives it a handler that maps
one recorded ``Call`` to a ``Response`` (or an exception to raise, like a refused connection).
``MetadataAnswers`` answers ``/v1/cluster``, ``/v1/logs/{log}`` and ``POST /v1/producers`` (ids
1, 2, ... with token ``token-<id>``) so producer and consumer tests only script the data
requests. No cluster behaviour is simulated beyond what a test writes.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from client.errors import ConnectionFailed, RequestTimeout
from client.transport import Params, Response
from storage.errors import DuplicateSequence, OutOfOrderSequence
from storage.producers import ProducerStateManager
from wire.batch import BatchHeader, iter_headers, iter_records, parse_header


@dataclass
class Call:
    """One request the client made."""

    method: str
    address: str
    path: str
    params: dict[str, str]
    json_body: Any
    data: bytes | None
    headers: dict[str, str]
    timeout_s: float

    @property
    def batch(self) -> BatchHeader:
        assert self.data is not None
        return parse_header(self.data)


Handler = Callable[[Call], "Response | BaseException | Awaitable[Response | BaseException]"]


def json_response(
    status: int, body: Any, headers: Mapping[str, str] | None = None, address: str = ""
) -> Response:
    return Response(
        status,
        json.dumps(body).encode(),
        {"Content-Type": "application/json", **(headers or {})},
        address,
    )


def error_response(status: int, code: str, message: str = "scripted", **fields: Any) -> Response:
    return json_response(status, {"error": code, "message": message, **fields})


class FakeTransport:
    """Records calls and answers them with ``handler``. Single event loop; not thread-safe."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.calls: list[Call] = []
        self.closed = False

    async def request(
        self,
        method: str,
        address: str,
        path: str,
        *,
        params: Params | None = None,
        json_body: Any = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout_s: float,
    ) -> Response:
        call = Call(
            method,
            address,
            path,
            {k: str(v) for k, v in (params or {}).items()},
            json_body,
            data,
            dict(headers or {}),
            timeout_s,
        )
        self.calls.append(call)
        result = self.handler(call)
        if inspect.isawaitable(result):
            result = await result
        if isinstance(result, BaseException):
            raise result
        return Response(result.status, result.body, result.headers, address)

    async def close(self) -> None:
        self.closed = True

    def data_calls(self) -> list[Call]:
        """The produce/consume calls (batches endpoints), in order."""
        return [c for c in self.calls if c.path.endswith("/batches")]


NODES = {"n1": "h1:1", "n2": "h2:2", "n3": "h3:3"}


@dataclass
class MetadataAnswers:
    """Answers cluster and log metadata; leaders are editable between calls."""

    log: str = "events"
    tablets: int = 3
    leaders: dict[int, str | None] = field(default_factory=dict)
    start_offsets: dict[int, int] = field(default_factory=dict)
    high_watermarks: dict[int, int] = field(default_factory=dict)
    log_requests: int = 0
    producer_ids_issued: int = 0

    def issue_producer(self) -> Response:
        self.producer_ids_issued += 1
        n = self.producer_ids_issued
        return json_response(
            200, {"producer_id": n, "producer_epoch": 0, "producer_token": f"token-{n}"}
        )

    def leader(self, tablet: int) -> str | None:
        return self.leaders.get(tablet, f"n{tablet % 3 + 1}")

    def answer(self, call: Call) -> Response | None:
        if call.method == "POST" and call.path == "/v1/producers":
            return self.issue_producer()
        if call.method != "GET":
            return None
        if call.path == "/v1/cluster":
            nodes = [{"id": i, "address": a, "alive": True} for i, a in NODES.items()]
            return json_response(200, {"cluster": "test", "controller": "n1", "nodes": nodes})
        if call.path == f"/v1/logs/{self.log}":
            self.log_requests += 1
            tablets = [
                {
                    "tablet": t,
                    "leader": self.leader(t),
                    "leader_epoch": 1,
                    "replicas": ["n1", "n2", "n3"],
                    "isr": ["n1", "n2", "n3"],
                    "start_offset": self.start_offsets.get(t, 0),
                    "high_watermark": self.high_watermarks.get(t, 0),
                }
                for t in range(self.tablets)
            ]
            return json_response(
                200, {"name": self.log, "config": {"tablets": self.tablets}, "tablets": tablets}
            )
        if call.path.startswith("/v1/logs/") and call.path.count("/") == 3:
            return error_response(404, "not_found", "no such log")
        return None


def tablet_of(call: Call) -> int:
    """The tablet index in a ``.../tablets/{i}/...`` path."""
    parts = call.path.split("/")
    return int(parts[parts.index("tablets") + 1])


class Acknowledger:
    """Answers produce calls like a leader that appends everything: per-tablet offsets.

    Duplicate detection is deliberately absent; tests that need it script it.
    """

    def __init__(self) -> None:
        self.end_offsets: dict[int, int] = {}
        self.batches: list[tuple[int, BatchHeader, bytes]] = []

    def answer(self, call: Call) -> Response:
        tablet = tablet_of(call)
        header = call.batch
        assert call.data is not None
        base = self.end_offsets.get(tablet, 0)
        self.end_offsets[tablet] = base + header.record_count
        self.batches.append((tablet, header, call.data))
        return json_response(
            200,
            {
                "tablet": tablet,
                "base_offset": base,
                "end_offset": base + header.record_count,
                "duplicate": False,
            },
        )


class IdempotentLeader:
    """Answers produce calls like a leader that appends and checks producer sequences with the
    server's own rules (``storage.producers.ProducerStateManager``: duplicates answered with
    the original offsets, gaps with ``out_of_order_sequence``).

    ``fault(n, call)`` (the n-th produce request, from 0) may script a failure: ``"refuse"``
    (connection refused, nothing sent), ``"lost"`` (appended, but the answer never arrives),
    ``"timeout"`` (503 timeout, nothing appended), ``"bad"`` (400, nothing appended).
    ``delay(n)`` seconds pass before request n is processed (on top of ``latency_s``), so a
    test can make one request overtake another. Single event loop; not thread-safe.
    """

    def __init__(
        self,
        latency_s: float = 0.002,
        fault: Callable[[int, Call], str | None] | None = None,
        delay: Callable[[int], float] | None = None,
    ) -> None:
        self.latency_s = latency_s
        self.fault = fault or (lambda _n, _call: None)
        self.delay = delay or (lambda _n: 0.0)
        self.logs: dict[int, list[bytes | None]] = {}
        self.producers: dict[int, ProducerStateManager] = {}
        self.requests = 0
        self.active = 0
        self.most_active = 0
        self.active_at_start: list[int] = []

    async def answer(self, call: Call) -> Response | BaseException:
        n = self.requests
        self.requests += 1
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        self.active_at_start.append(self.active)
        try:
            await asyncio.sleep(self.latency_s + self.delay(n))
            return self._process(n, call)
        finally:
            self.active -= 1

    def _process(self, n: int, call: Call) -> Response | BaseException:
        fault = self.fault(n, call)
        if fault == "refuse":
            return ConnectionFailed("refused", address=call.address, sent=False)
        if fault == "timeout":
            return error_response(503, "timeout")
        if fault == "bad":
            return error_response(400, "bad_request")
        tablet = tablet_of(call)
        assert call.data is not None
        try:
            base, end, duplicate = self._append(tablet, call.data)
        except OutOfOrderSequence as exc:
            return error_response(409, "out_of_order_sequence", str(exc))
        if fault == "lost":
            return RequestTimeout("the answer was lost", address=call.address)
        return json_response(
            200, {"tablet": tablet, "base_offset": base, "end_offset": end, "duplicate": duplicate}
        )

    def _append(self, tablet: int, data: bytes) -> tuple[int, int, bool]:
        state = self.producers.setdefault(tablet, ProducerStateManager())
        headers = [h for _pos, h in iter_headers(data)]
        try:
            state.check_request(headers)
        except DuplicateSequence as dup:
            return dup.base_offset, dup.end_offset, True
        log = self.logs.setdefault(tablet, [])
        base = len(log)
        for pos, h in iter_headers(data):
            start = len(log)
            log.extend(r.value for r in iter_records(data[pos : pos + h.size]))
            state.update(h, start, len(log), 0)
        return base, len(log), False
