"""``tabletlog dev up`` end to end: start, report ready, serve, stop cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import NoReturn

import pytest

from client.cli.local_cluster import generate_config, read_nodes
from testkit.waiting import wait_until
from tests.client.conftest import FAST_TUNING, skip_unless_server_importable

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]

REPO_ROOT = Path(__file__).resolve().parents[2]


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "client.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=env,
        timeout=60,
        check=False,
    )


def _wait_for_line(
    path: Path, needle: str, process: subprocess.Popen[str], timeout_s: float
) -> None:
    """Wait until ``dev up`` printed ``needle``; fail with its output if it exits or times out."""

    def never_printed() -> NoReturn:
        pytest.fail(f"dev up never printed {needle!r}:\n{path.read_text(errors='replace')}")

    def printed() -> bool:
        if needle in path.read_text(errors="replace"):
            return True
        if process.poll() is not None:
            never_printed()
        return False

    try:
        wait_until(printed, timeout_s, f"dev up prints {needle!r}", interval_s=0.1)
    except AssertionError:
        never_printed()


@pytest.mark.parametrize("nodes", [1, 3])
def test_dev_up_starts_serves_and_stops(tmp_path: Path, nodes: int) -> None:
    skip_unless_server_importable()
    data = tmp_path / "data"
    config = generate_config(
        tmp_path / "cluster.yaml", nodes=nodes, data_dir=data, tuning=FAST_TUNING
    )
    bootstrap = ",".join(read_nodes(config)[1].values())
    output = tmp_path / "dev-up.out"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    with output.open("w") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "client.cli",
                "dev",
                "up",
                "--config",
                str(config),
                "--data-dir",
                str(data),
                "--no-live",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=REPO_ROOT,
            env=env,
        )
    try:
        _wait_for_line(output, "is ready", process, 60)
        status = _run_cli("--bootstrap", bootstrap, "status", "--json")
        assert status.returncode == 0, status.stderr
        doc = json.loads(status.stdout)
        assert sorted(n["id"] for n in doc["nodes"]) == [f"n{i + 1}" for i in range(nodes)]
        assert all(n["alive"] for n in doc["nodes"])
        created = _run_cli(
            "--bootstrap",
            bootstrap,
            "log",
            "create",
            "dev-up",
            "--tablets",
            "1",
            "--replication-factor",
            str(nodes),
            "--min-insync",
            "1",
        )
        assert created.returncode == 0, created.stderr
        for node in read_nodes(config)[1]:
            assert (data / f"{node}.log").exists()
            assert (data / node).is_dir()
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(60)
    text = output.read_text()
    assert code == 0, text
    assert text.rstrip().endswith("stopped")
    for node in read_nodes(config)[1]:
        log = (data / f"{node}.log").read_text(errors="replace")
        assert "Traceback" not in log, log
