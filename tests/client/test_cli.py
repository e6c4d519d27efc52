"""The ``tabletlog`` command without a cluster: parsing, exit codes, output helpers."""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

from client.cli import build_parser, main
from client.cli.bench import percentile, summarize
from client.cli.common import (
    BOOTSTRAP_ENV,
    DEFAULT_BOOTSTRAP,
    EXIT_CLUSTER,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    UsageError,
    bootstrap_from,
)
from client.cli.consume import format_record, parse_from
from client.cli.dev import choose_config
from client.cli.local_cluster import generate_config, read_nodes
from client.cli.logs import settings_from
from client.cli.produce import split_line
from client.producer import ProducerStats
from testkit.ports import free_ports
from wire.batch import Record

# ---------------------------------------------------------------------------------------------
# a stub HTTP server: canned JSON per path, enough for exit codes and output formats


class _Stub(BaseHTTPRequestHandler):
    routes: ClassVar[dict[tuple[str, str], tuple[int, Any]]] = {}

    def _answer(self) -> None:
        path = self.path.split("?")[0]
        status, body = self.routes.get(
            (self.command, path), (404, {"error": "not_found", "message": f"no route {path}"})
        )
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_DELETE = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean


@pytest.fixture
def stub() -> Iterator[tuple[str, dict[tuple[str, str], tuple[int, Any]]]]:
    routes: dict[tuple[str, str], tuple[int, Any]] = {}
    handler = type("Stub", (_Stub,), {"routes": routes})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", routes
    finally:
        server.shutdown()
        server.server_close()


# ---------------------------------------------------------------------------------------------
# exit codes


def test_usage_errors_exit_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["log", "create"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "required: NAME" in err
    assert main(["nonsense"]) == EXIT_USAGE
    assert main(["consume", "x", "--from", "yesterday-ish", "--bootstrap", "h:1"]) == EXIT_USAGE
    assert "--from 'yesterday-ish'" in capsys.readouterr().err
    assert main(["status", "--bootstrap", "no-port"]) == EXIT_USAGE


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == EXIT_OK
    assert "dev" in capsys.readouterr().out


def test_unreachable_cluster_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    dead = ",".join(f"127.0.0.1:{p}" for p in free_ports(2))
    assert main(["--bootstrap", dead, "status"]) == EXIT_UNREACHABLE
    err = capsys.readouterr().err
    assert err.startswith("tabletlog: error: no node answered")
    assert err.count("\n") == 1


def test_cluster_errors_exit_1(
    stub: tuple[str, dict[Any, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    address, routes = stub
    routes[("POST", "/v1/logs")] = (
        409,
        {"error": "already_exists", "message": "log 'x' already exists"},
    )
    assert main(["log", "describe", "missing", "--bootstrap", address]) == EXIT_CLUSTER
    assert "not_found" in capsys.readouterr().err
    assert main(["log", "create", "x", "--bootstrap", address]) == EXIT_CLUSTER
    assert capsys.readouterr().err == "tabletlog: error: already_exists: log 'x' already exists\n"


def test_json_output_is_exactly_json(
    stub: tuple[str, dict[Any, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    address, routes = stub
    routes[("GET", "/v1/logs")] = (200, {"logs": ["a", "b"]})
    assert main(["--bootstrap", address, "log", "list", "--json"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out) == {"logs": ["a", "b"]}
    assert main(["--bootstrap", address, "log", "list"]) == EXIT_OK
    assert capsys.readouterr().out == "a\nb\n"


def test_status_json_falls_back_without_v1_status(
    stub: tuple[str, dict[Any, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    address, routes = stub
    routes[("GET", "/v1/cluster")] = (
        200,
        {
            "cluster": "c",
            "controller": "n1",
            "nodes": [{"id": "n1", "address": address, "alive": True}],
        },
    )
    routes[("GET", "/v1/logs")] = (200, {"logs": ["e"]})
    routes[("GET", "/v1/logs/e")] = (
        200,
        {
            "name": "e",
            "config": {},
            "tablets": [
                {
                    "tablet": 0,
                    "leader": "n1",
                    "leader_epoch": 2,
                    "replicas": ["n1"],
                    "isr": ["n1"],
                    "start_offset": 0,
                    "high_watermark": 7,
                }
            ],
        },
    )
    assert main(["status", "--json", "--bootstrap", address]) == EXIT_OK
    status = json.loads(capsys.readouterr().out)
    assert status["controller"] == "n1"
    assert status["logs"][0]["tablets"][0]["high_watermark"] == 7
    assert main(["status", "--bootstrap", address]) == EXIT_OK
    out = capsys.readouterr().out
    assert "controller" in out and "n1" in out


def test_node_command_becomes_python_m_node(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, list[str]]] = []

    def fake_execv(path: str, argv: list[str]) -> None:
        seen.append((path, argv))
        raise SystemExit(7)

    monkeypatch.setattr("os.execv", fake_execv)
    for argv in (["--node", "n2"], ["--node", "n2", "--data-dir", "/d"]):
        with pytest.raises(SystemExit) as exited:
            main(["node", "--config", "c.yaml", *argv])
        assert exited.value.code == 7
    node = [sys.executable, "-m", "node", "--config", "c.yaml", "--node", "n2"]
    assert seen == [(sys.executable, node), (sys.executable, [*node, "--data-dir", "/d"])]


# ---------------------------------------------------------------------------------------------
# option parsing


def test_bootstrap_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    parser = build_parser()
    monkeypatch.delenv(BOOTSTRAP_ENV, raising=False)
    assert bootstrap_from(parser.parse_args(["status"])) == DEFAULT_BOOTSTRAP.split(",")
    monkeypatch.setenv(BOOTSTRAP_ENV, "e:1")
    assert bootstrap_from(parser.parse_args(["status"])) == ["e:1"]
    assert bootstrap_from(parser.parse_args(["--bootstrap", "g:1", "status"])) == ["g:1"]
    assert bootstrap_from(parser.parse_args(["status", "--bootstrap", "s:1"])) == ["s:1"]


def test_log_create_sends_only_given_settings() -> None:
    parser = build_parser()
    args = parser.parse_args(["log", "create", "x"])
    assert settings_from(args) == {}
    args = parser.parse_args(
        [
            "log",
            "create",
            "x",
            "--tablets",
            "6",
            "--replication-factor",
            "3",
            "--min-insync",
            "2",
            "--retention-ms",
            "none",
            "--fsync",
            "50",
            "--segment-bytes",
            "1048576",
        ]
    )
    assert settings_from(args) == {
        "tablets": 6,
        "replication_factor": 3,
        "min_insync_replicas": 2,
        "retention_ms": None,
        "fsync": 50,
        "segment_bytes": 1048576,
    }
    args = parser.parse_args(
        ["log", "create", "x", "--replication-factor", "1", "--min-insync", "2"]
    )
    with pytest.raises(UsageError):
        settings_from(args)


def test_parse_from() -> None:
    assert parse_from("earliest") == "earliest"
    assert parse_from("latest") == "latest"
    assert parse_from("42") == 42
    assert parse_from("1700000000000ms") == {"timestamp": 1_700_000_000_000}
    assert parse_from("2023-11-14T22:13:20Z") == {"timestamp": 1_700_000_000_000}
    assert parse_from("2023-11-14T22:13:20.5+00:00") == {"timestamp": 1_700_000_000_500}
    assert parse_from("-10m", now_ms=1_000_000) == {"timestamp": 400_000}
    assert parse_from("-1.5s", now_ms=10_000) == {"timestamp": 8_500}
    for bad in ("", "soon", "-5y", "12abc"):
        with pytest.raises(UsageError):
            parse_from(bad)


def test_split_line() -> None:
    assert split_line(b"v", None, None) == (None, b"v")
    assert split_line(b"v", b"k", None) == (b"k", b"v")
    assert split_line(b"user:a:b", None, b":") == (b"user", b"a:b")
    assert split_line(b"no-sep", None, b":") == (None, b"no-sep")


def test_format_record() -> None:
    record = Record(offset=7, timestamp=1_700_000_000_000, key=b"k", value=b"hello")
    assert format_record(1, record, as_json=False, verbose=False) == "hello"
    assert (
        format_record(1, record, as_json=False, verbose=True)
        == "1:7 2023-11-14T22:13:20.000Z key=k hello"
    )
    assert json.loads(format_record(1, record, as_json=True, verbose=False)) == {
        "tablet": 1,
        "offset": 7,
        "timestamp": 1_700_000_000_000,
        "key": "k",
        "value": "hello",
    }
    binary = Record(offset=0, timestamp=0, key=None, value=b"\xff\x00")
    assert json.loads(format_record(0, binary, as_json=True, verbose=False)) == {
        "tablet": 0,
        "offset": 0,
        "timestamp": 0,
        "key": None,
        "value_b64": "/wA=",
    }


def test_bench_summary() -> None:
    assert percentile([], 0.5) == 0.0
    values = [float(i) for i in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    stats = ProducerStats(batches_sent=10)
    stats.batch_latencies_s.extend([0.001, 0.002, 0.010])
    summary = summarize(1000, 100, 2.0, stats)
    assert summary["records_per_s"] == 500.0
    assert summary["mb_per_s"] == 0.05
    assert summary["batch_latency_ms_p50"] == 2.0
    assert summary["batch_latency_ms_max"] == 10.0


# ---------------------------------------------------------------------------------------------
# dev up's config handling (no processes started)


def test_generated_config_is_readable(tmp_path: Path) -> None:
    path = generate_config(
        tmp_path / "c.yaml",
        nodes=5,
        data_dir=tmp_path / "data",
        tuning={"heartbeat_interval_ms": 100},
    )
    raw = yaml.safe_load(path.read_text())
    assert raw["log_defaults"]["replication_factor"] == 3
    assert raw["tuning"] == {"heartbeat_interval_ms": 100}
    name, addresses = read_nodes(path)
    assert name == "dev"
    assert list(addresses) == ["n1", "n2", "n3", "n4", "n5"]
    ports = [int(a.rsplit(":", 1)[1]) for a in addresses.values()]
    assert len(set(ports)) == 5


def test_dev_up_config_choice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    args = argparse.Namespace(config=None, nodes=1, data_dir=tmp_path / "data")
    generated = choose_config(args)
    assert generated == tmp_path / "data" / "cluster-1.yaml"
    assert len(read_nodes(generated)[1]) == 1
    assert choose_config(args) == generated  # reused, so restarts keep ports and secret
    explicit = argparse.Namespace(config=generated, nodes=3, data_dir=tmp_path / "data")
    with pytest.raises(UsageError, match="has 1 nodes"):
        choose_config(explicit)


def test_checked_in_local_config_is_readable() -> None:
    repo = Path(__file__).resolve().parents[2]
    name, addresses = read_nodes(repo / "cluster-configs" / "local-3.yaml")
    assert addresses == {"n1": "127.0.0.1:7101", "n2": "127.0.0.1:7102", "n3": "127.0.0.1:7103"}
    assert name == "local"


def test_record_timestamps_render_in_utc() -> None:
    moment = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parse_from(moment.isoformat()) == {"timestamp": int(moment.timestamp() * 1000)}
