"""The HTTP calls of the fault-injection suite, and what their answers mean.

:func:`call` (JSON) and :func:`post_bytes` (the binary produce endpoint) send one request and
never raise for network trouble: they return an :class:`Answer` (status 0 when no HTTP answer
came, ``refused`` when the connection was refused and so nothing was sent). :func:`classify`
turns a produce answer into an outcome per docs/architecture.md#errors; :func:`record_value` reads a
consumed record's value. Standard library HTTP only (urllib).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tests.faults.history import Outcome

DEFINITE_FAILURES = {"not_enough_replicas", "no_leader"}


@dataclass(frozen=True, slots=True)
class Answer:
    status: int  # 0: no HTTP answer
    body: Any
    refused: bool = False  # no answer because the connection was refused: nothing was sent
    error: str = ""


def call(method: str, url: str, body: object | None = None, timeout_s: float = 10.0) -> Answer:
    """One HTTP request; never raises for network trouble (status 0 instead)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    return _send(request, timeout_s)


def post_bytes(url: str, body: bytes, timeout_s: float) -> Answer:
    """POST record batches to the binary produce endpoint."""
    request = urllib.request.Request(url, data=body, method="POST")
    request.add_header("Content-Type", "application/vnd.tabletlog.batches")
    return _send(request, timeout_s)


def _send(request: urllib.request.Request, timeout_s: float) -> Answer:
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return Answer(response.status, _decode(response.read()))
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, _decode(exc.read()))
    except urllib.error.URLError as exc:
        refused = isinstance(exc.reason, ConnectionRefusedError)
        return Answer(0, None, refused=refused, error=repr(exc.reason))
    except (OSError, ValueError) as exc:  # timeouts, resets, a truncated answer
        return Answer(0, None, error=repr(exc))


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return raw.decode(errors="replace")


def error_code(answer: Answer) -> str:
    if isinstance(answer.body, dict):
        return str(answer.body.get("error"))
    return answer.error or f"HTTP {answer.status}"


def classify(answer: Answer) -> Outcome:
    """The outcome of a produce answer, per docs/architecture.md#errors."""
    if answer.status == 200:
        return "ok"
    if answer.status == 0:
        return "fail" if answer.refused else "info"
    if 400 <= answer.status < 500:
        return "fail"
    if answer.status == 503 and error_code(answer) in DEFINITE_FAILURES:
        return "fail"
    return "info"


def record_value(record: Mapping[str, Any]) -> str:
    """A consumed record's value; a value that is not UTF-8 (never written by us) is marked."""
    if record.get("value") is None and record.get("value_b64") is not None:
        return f"b64:{record['value_b64']}"
    return str(record.get("value"))
