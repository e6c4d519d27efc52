"""Static checks of the deployment files: fast, no containers, run with the unit tests.

compose.yaml, cluster-configs/compose.yaml, Dockerfile and deploy/healthcheck.py must agree with
each other (ports, node ids, mounts, data directory), which the end-to-end test only finds out
after a slow build.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from node.config import load_config

REPO = Path(__file__).resolve().parents[2]
SECRET_ENV = {"TABLETLOG_SECRET": "a-test-secret-of-some-length"}


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "compose.yaml").read_text())
    return loaded


def _healthcheck() -> ModuleType:
    spec = importlib.util.spec_from_file_location("healthcheck", REPO / "deploy/healthcheck.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["compose.yaml", "multi-host.yaml"])
def test_deployment_configs_load(name: str) -> None:
    config = load_config(REPO / "cluster-configs" / name, env=SECRET_ENV)
    assert [n.id for n in config.nodes] == ["n1", "n2", "n3"]
    assert config.secret == SECRET_ENV["TABLETLOG_SECRET"], "secret_env, not a secret in a file"


def test_multi_host_config_binds_and_advertises_per_machine() -> None:
    config = load_config(REPO / "cluster-configs/multi-host.yaml", env=SECRET_ENV)
    assert len({n.bind_host for n in config.nodes}) == 3
    assert len({n.advertised_host for n in config.nodes}) == 3
    assert all(n.advertise and n.bind for n in config.nodes)


def test_compose_services_match_the_cluster_config() -> None:
    config = load_config(REPO / "cluster-configs/compose.yaml", env=SECRET_ENV)
    services = _compose()["services"]
    assert sorted(services) == sorted(n.id for n in config.nodes)
    for spec in config.nodes:
        service = services[spec.id]
        command = service["command"]
        assert command[command.index("--node") + 1] == spec.id
        config_path = command[command.index("--config") + 1]
        assert spec.host == spec.id, "peers reach each other by service name"
        assert spec.bind_host == "0.0.0.0", "published ports reach the container's address"
        mounts = {m.split(":")[1]: m for m in service["volumes"]}
        assert mounts[config_path] == f"./cluster-configs/compose.yaml:{config_path}:ro"
        data_root = config.data_dir_for(spec.id).parent
        assert mounts[str(data_root)] == f"{spec.id}-data:{data_root}"
        ports = service["ports"]
        assert len(ports) == 1, "only the HTTP API is published"
        assert ports[0].endswith(f":{spec.api_port}"), ports
        assert f"{spec.raft_port}" not in ports[0]


def test_compose_requires_the_secret_and_checks_readiness() -> None:
    compose = _compose()
    for service in compose["services"].values():
        secret = service["environment"]["TABLETLOG_SECRET"]
        assert re.fullmatch(r"\$\{TABLETLOG_SECRET:\?[^}]+\}", secret), secret
        assert service["healthcheck"]["test"] == [
            "CMD",
            "python",
            "/opt/tabletlog/healthcheck.py",
        ]
        assert "build" in service and "image" in service
        # A list, not a mapping: podman-compose 1.0 passes only the keys of a mapping.
        assert "net.ipv4.tcp_syn_retries=2" in service["sysctls"]
    assert set(compose["volumes"]) == {f"{s}-data" for s in compose["services"]}
    assert "TABLETLOG_SECRET=" in (REPO / ".env.example").read_text()


def test_dockerfile_shape() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert re.findall(r"^FROM (\S+)", text, re.M) == ["python:3.11-slim-bookworm"] * 2
    assert 'ENTRYPOINT ["python", "-m", "node"]' in text
    assert re.search(r"^USER 10001", text, re.M), "runs as a non-root user"
    assert re.search(r"^VOLUME \[\"/var/lib/tabletlog\"\]", text, re.M)
    assert "HEALTHCHECK" in text and "/opt/tabletlog/healthcheck.py" in text
    assert "--no-index --find-links /src/wheels" in text
    # Only what both the real image and the debootstrap stand-in have.
    assert "curl" not in text and "apt-get" not in text


def test_healthcheck_finds_the_node_process_and_its_readyz(tmp_path: Path) -> None:
    health = _healthcheck()
    proc = tmp_path / "proc"
    for pid, argv in {
        "1": ["/opt/tabletlog/bin/python", "-m", "node", "--config", "/c.yaml", "--node", "n2"],
        "40": ["python", "/opt/tabletlog/healthcheck.py"],
        "self": ["ignored"],
    }.items():
        (proc / pid).mkdir(parents=True)
        (proc / pid / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    argv = health.node_argv(proc)
    assert health.option(argv, "--node") == "n2"
    assert health.option(argv, "--config") == "/c.yaml"
    assert health.option(["--node=n3"], "--node") == "n3"
    with pytest.raises(LookupError):
        health.option(argv, "--data-dir")

    url = health.readyz_url(str(REPO / "cluster-configs/compose.yaml"), "n2")
    assert url == "http://127.0.0.1:7102/readyz"
    url = health.readyz_url(str(REPO / "cluster-configs/multi-host.yaml"), "n3")
    assert url == "http://192.0.2.13:7100/readyz"
    with pytest.raises(LookupError):
        health.readyz_url(str(REPO / "cluster-configs/compose.yaml"), "n9")


def test_healthcheck_reports_unhealthy_without_a_node(tmp_path: Path) -> None:
    health = _healthcheck()
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "cmdline").write_bytes(b"sleep\0infinity\0")
    with pytest.raises(LookupError):
        health.node_argv(tmp_path)
    ready, reason = health.check("http://127.0.0.1:9/readyz")
    assert not ready and "127.0.0.1:9" in reason
