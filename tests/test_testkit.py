"""The shared toolkit (``testkit``): the deadline loops, free ports and the two HTTP shapes."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from testkit.http import Answer, HttpError, call, http
from testkit.ports import free_port, free_ports
from testkit.waiting import wait_until, wait_until_async


def test_wait_until_returns_the_first_truthy_value_and_retries_exceptions() -> None:
    calls: list[int] = []

    def predicate() -> str | None:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("not up yet")
        return "done" if len(calls) >= 3 else None

    assert wait_until(predicate, 5, "three calls", interval_s=0.001) == "done"
    assert len(calls) == 3


def test_wait_until_times_out_with_the_message_and_the_last_error() -> None:
    def predicate() -> None:
        raise KeyError("leader")

    with pytest.raises(AssertionError, match=r"timed out after 0\.1 s: a leader .*KeyError"):
        wait_until(predicate, 0.1, "a leader", interval_s=0.01)


def test_pytest_fail_in_a_predicate_ends_the_wait_at_once() -> None:
    calls: list[int] = []

    def predicate() -> bool:
        calls.append(1)
        pytest.fail("the node exited")

    with pytest.raises(pytest.fail.Exception, match="the node exited"):
        wait_until(predicate, 30, "never")
    assert len(calls) == 1


async def test_wait_until_async_lets_the_loop_make_the_condition_true() -> None:
    seen: list[int] = []

    async def producer() -> None:
        await asyncio.sleep(0.01)
        seen.append(1)

    task = asyncio.ensure_future(producer())
    assert await wait_until_async(lambda: len(seen), 5, "the producer ran") == 1
    await task
    with pytest.raises(AssertionError, match="never"):
        await wait_until_async(lambda: False, 0.05, "never")


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = free_ports(8)
    assert len(set(ports)) == 8
    assert all(0 < p < 65536 for p in ports)
    assert free_port() > 0


class _Handler(BaseHTTPRequestHandler):
    """/ok: JSON 200 echoing the request body; /text: a text answer; /missing: JSON 404."""

    answers: ClassVar[dict[str, tuple[int, str, bytes]]] = {
        "/text": (200, "text/plain", b"metric 1\n"),
        "/missing": (404, "application/json", b'{"error": "not_found", "message": "no"}'),
    }

    def do_GET(self) -> None:
        self._answer(b"")

    def do_POST(self) -> None:
        self._answer(self.rfile.read(int(self.headers.get("Content-Length", 0))))

    def _answer(self, body: bytes) -> None:
        if self.path == "/ok":
            payload = json.dumps(
                {"got": body.decode(), "type": self.headers.get("Content-Type")}
            ).encode()
            status, content_type = 200, "application/json"
        else:
            status, content_type, payload = self.answers[self.path]
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def test_http_sends_json_and_returns_json_or_bytes(server: str) -> None:
    assert http("POST", f"{server}/ok", {"a": 1}) == {
        "got": '{"a": 1}',
        "type": "application/json",
    }
    assert http("GET", f"{server}/text") == b"metric 1\n"
    raw = http("POST", f"{server}/ok", raw=b"\x00\x01", headers={"Content-Type": "x/batches"})
    assert raw == {"got": "\x00\x01", "type": "x/batches"}


def test_http_raises_http_error_with_the_parsed_body(server: str) -> None:
    with pytest.raises(HttpError) as info:
        http("GET", f"{server}/missing")
    assert info.value.status == 404
    assert info.value.code == "not_found"


def test_call_never_raises_and_says_what_happened(server: str) -> None:
    assert call("GET", f"{server}/missing") == Answer(404, {"error": "not_found", "message": "no"})
    assert call("GET", f"{server}/text") == Answer(200, "metric 1\n")
    refused = call("GET", f"http://127.0.0.1:{free_port()}/ok", timeout_s=2)
    assert refused.status == 0
    assert refused.refused
    assert refused.error
