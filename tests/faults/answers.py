"""What the answers of the fault-injection suite's HTTP calls mean.

The calls themselves are :func:`testkit.http.call`, which never raises for network trouble and
returns an :class:`testkit.http.Answer`. :func:`classify` turns a produce answer into an outcome
per docs/architecture.md#errors; :func:`error_code` names an answer's error;
:func:`record_value` reads a consumed record's value. Pure functions: thread-safe.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from testkit.http import Answer
from tests.faults.history import Outcome

DEFINITE_FAILURES = {"not_enough_replicas", "no_leader"}
#: The Content-Type of the binary produce endpoint (record batches as they are on disk).
BATCHES_CONTENT_TYPE = "application/vnd.tabletlog.batches"


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
