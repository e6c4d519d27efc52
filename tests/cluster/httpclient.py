"""Plain HTTP for tests: JSON in and out, errors as exceptions, free ports. Thread-safe."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
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


def http(
    method: str,
    url: str,
    body: Any = None,
    *,
    timeout_s: float = 15.0,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Any:
    """One HTTP call; JSON in and out (raw bytes out for non-JSON answers)."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if body is not None:
        request.add_header("Content-Type", "application/json")
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


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct free TCP ports (held together while chosen, so they differ)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind((host, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()
