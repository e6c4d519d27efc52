"""One HTTP call to a node, in the two shapes tests and benchmarks need. Thread-safe.

* :func:`http` raises: :class:`HttpError` for a non-2xx answer, OSError (``URLError``, timeouts)
  when no answer came. JSON in and out; the raw bytes when the answer is not JSON (``/metrics``,
  record batches). For tests that expect success and want a failure to be loud.
* :func:`call` never raises for HTTP or network trouble: it returns an :class:`Answer` (status 0
  when no HTTP answer came, ``refused`` when the connection was refused, so nothing was sent).
  For workloads and probes that classify every outcome (fault injection, deployments).

Standard library only (urllib), so it works against containers and network namespaces alike.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any


class HttpError(Exception):
    """A non-2xx answer; ``body`` is the parsed JSON error when there is one."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body

    @property
    def code(self) -> str | None:
        return self.body.get("error") if isinstance(self.body, dict) else None


@dataclass(frozen=True, slots=True)
class Answer:
    """What :func:`call` got: the status (0: no HTTP answer) and the decoded body."""

    status: int
    body: Any
    refused: bool = False  # no answer because the connection was refused: nothing was sent
    error: str = ""  # why no answer came (repr of the network error)


def http(
    method: str,
    url: str,
    body: Any = None,
    *,
    timeout_s: float = 15.0,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Any:
    """One HTTP call; JSON in and out (raw bytes out for non-JSON answers); raises HttpError."""
    request = _request(method, url, body, raw, headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as resp:
            payload = resp.read()
            if resp.headers.get_content_type() == "application/json":
                return json.loads(payload) if payload else None
            return payload
    except urllib.error.HTTPError as exc:
        payload = exc.read()
        try:
            parsed: Any = json.loads(payload)
        except ValueError:
            parsed = payload.decode("utf-8", "replace")
        raise HttpError(exc.code, parsed) from None


def call(
    method: str,
    url: str,
    body: object | None = None,
    *,
    timeout_s: float = 10.0,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Answer:
    """One HTTP call that never raises for HTTP or network trouble; the body is JSON when it
    parses, else text (None when empty)."""
    request = _request(method, url, body, raw, headers)
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


def _request(
    method: str, url: str, body: Any, raw: bytes | None, headers: dict[str, str] | None
) -> urllib.request.Request:
    """``raw`` bytes as they are, else ``body`` as JSON (with its Content-Type)."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if body is not None:
        request.add_header("Content-Type", "application/json")
    return request


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return raw.decode(errors="replace")
