"""The cluster config schema: every shipped file loads; every mistake is one clear line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from node.config import ConfigError, load_config, parse_config

REPO = Path(__file__).resolve().parents[2]

GOOD: dict[str, Any] = {
    "cluster": {"name": "t", "secret": "a-long-enough-secret"},
    "nodes": [
        {"id": "n1", "host": "127.0.0.1", "api_port": 7101, "raft_port": 7201},
        {"id": "n2", "host": "127.0.0.1", "api_port": 7102, "raft_port": 7202},
    ],
    "data_dir": "./data/{node}",
    "log_defaults": {
        "tablets": 2,
        "replication_factor": 2,
        "min_insync_replicas": 1,
        "segment_bytes": 1048576,
        "retention_ms": None,
        "retention_bytes": None,
        "fsync": "always",
    },
}


@pytest.mark.parametrize(
    "path", sorted((REPO / "cluster-configs").glob("*.yaml")), ids=lambda p: p.name
)
def test_every_shipped_config_loads(path: Path) -> None:
    config = load_config(path, env={"TABLETLOG_SECRET": "secret-from-the-environment"})
    assert config.nodes
    for node in config.nodes:
        assert config.node(node.id) is node


def test_good_config_parses_with_defaults() -> None:
    config = parse_config(GOOD, env={})
    assert config.name == "t"
    assert config.log_defaults.tablets == 2
    assert config.log_defaults.retention_ms is None
    assert config.node("n2").api_address == "127.0.0.1:7102"
    assert config.data_dir_for("n1") == Path("./data/n1")
    assert config.data_dir_for("n1", "/tmp/x") == Path("/tmp/x")


def _with(path: list[str | int], value: Any) -> dict[str, Any]:
    raw: dict[str, Any] = yaml.safe_load(yaml.safe_dump(GOOD))
    target: Any = raw
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return raw


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (["surprise"], 1, "unknown key 'surprise'"),
        (["cluster", "colour"], "red", "unknown key cluster.'colour'"),
        (["nodes", 0, "port"], 1, "unknown key nodes[0].'port'"),
        (["log_defaults", "tablet"], 3, "unknown log setting 'tablet'"),
        (["cluster", "secret"], _DELETE, "missing cluster.secret"),
        (["nodes", 1, "api_port"], 7101, "duplicate port 7101"),
        (["nodes", 1, "raft_port"], 7101, "duplicate port 7101"),
        (["nodes", 1, "id"], "n1", "duplicate node id 'n1'"),
        (["nodes", 0, "api_port"], 70000, "nodes[0].api_port must be a port number"),
        (["log_defaults", "fsync"], "sometimes", "fsync must be"),
        (["log_defaults", "min_insync_replicas"], 3, "min_insync_replicas must be between"),
        (["nodes"], [], "nodes must be a non-empty list"),
    ],
)
def test_mistakes_are_one_line_errors(path: list[str | int], value: Any, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(_with(path, value), env={})
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_secret_from_environment() -> None:
    raw = _with(["cluster", "secret"], _DELETE)
    raw["cluster"]["secret_env"] = "MY_SECRET"
    assert parse_config(raw, env={"MY_SECRET": "from-env-123"}).secret == "from-env-123"
    with pytest.raises(ConfigError, match="MY_SECRET, which is unset"):
        parse_config(raw, env={})


@pytest.mark.parametrize(
    ("mutation", "reason"),
    [
        ({"surprise": 1}, "unknown key"),
        ({"cluster": {"name": "t"}}, "missing cluster.secret"),
    ],
)
def test_node_exits_nonzero_with_one_line(
    tmp_path: Path, mutation: dict[str, Any], reason: str
) -> None:
    raw = {**GOOD, **mutation}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    proc = subprocess.run(
        [sys.executable, "-m", "node", "--config", str(path), "--node", "n1"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=30,
        check=False,
    )
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and reason in lines[0], proc.stderr


def test_unknown_node_id_exits_nonzero(tmp_path: Path) -> None:
    path = tmp_path / "good.yaml"
    path.write_text(yaml.safe_dump(GOOD))
    proc = subprocess.run(
        [sys.executable, "-m", "node", "--config", str(path), "--node", "n9"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=30,
        check=False,
    )
    assert proc.returncode != 0
    assert "unknown node id 'n9'" in proc.stderr


def test_machines_may_share_ports_and_bind_everywhere() -> None:
    raw = yaml.safe_load(yaml.safe_dump(GOOD))
    raw["nodes"] = [
        {
            "id": f"n{i}",
            "host": f"10.0.0.{i}",
            "bind": "0.0.0.0",
            "api_port": 7101,
            "raft_port": 7201,
        }
        for i in (1, 2, 3)
    ]
    config = parse_config(raw, env={})
    assert config.node("n2").bind_host == "0.0.0.0"
    assert config.node("n2").raft_address == "10.0.0.2:7201"


def test_each_replication_component_gets_its_settings_from_the_config() -> None:
    raw = _with(["tuning"], {"heartbeat_interval_ms": 100, "raft_min_timeout_ms": 300})
    raw["nodes"][1]["bind"] = "0.0.0.0"
    config = parse_config(raw, env={})
    raft = config.raft_settings()
    assert (raft.cluster_name, raft.secret) == ("t", "a-long-enough-secret")
    assert raft.member("n2").raft_bind == "0.0.0.0:7202"
    assert raft.member("n2").raft_address == "127.0.0.1:7202"
    assert raft.api_addresses() == {"n1": "127.0.0.1:7101", "n2": "127.0.0.1:7102"}
    assert raft.min_timeout_ms == 300 and raft.max_timeout_ms == config.tuning.raft_max_timeout_ms
    with pytest.raises(ValueError, match="unknown node id 'n9'"):
        raft.member("n9")
    replica = config.replica_settings()
    assert replica.log_defaults is config.log_defaults
    assert replica.request_timeout_ms == config.tuning.request_timeout_ms
    assert config.controller_settings().heartbeat_interval_ms == 100
    heartbeat = config.heartbeat_settings()
    assert heartbeat.heartbeat_interval_ms == 100
    assert heartbeat.session_timeout_ms == config.tuning.session_timeout_ms
    assert heartbeat.api_addresses["n1"] == "127.0.0.1:7101"
