"""The ``tabletlog`` command end to end against a real 3-node cluster (subprocesses)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from client.cli.common import EXIT_CLUSTER, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE
from testkit.cluster import Cluster
from testkit.ports import free_ports
from tests.client.conftest import bootstrap_of
from wire.partitioning import tablet_for_key

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

REPO_ROOT = Path(__file__).resolve().parents[2]


def tabletlog(
    cluster: Cluster | None, *args: str, stdin: str | None = None, bootstrap: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m client.cli`` (the tabletlog command) and capture its output."""
    address = bootstrap or (bootstrap_of(cluster) if cluster is not None else "")
    argv = [sys.executable, "-m", "client.cli", "--bootstrap", address, *args]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "COLUMNS": "200"}
    return subprocess.run(
        argv,
        input=stdin,
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=env,
        timeout=120,
        check=False,
    )


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_create_produce_consume_status_delete(shared_cluster: Cluster) -> None:
    c = shared_cluster
    created = tabletlog(c, "log", "create", "cli-e2e", "--tablets", "2", "--json")
    assert created.returncode == EXIT_OK, created.stderr
    assert len(json.loads(created.stdout)["tablets"]) == 2

    again = tabletlog(c, "log", "create", "cli-e2e")
    assert again.returncode == EXIT_CLUSTER
    assert again.stderr.startswith("tabletlog: error: already_exists")
    assert again.stderr.count("\n") == 1

    lines = [f"user-{i % 5}:event {i}" for i in range(40)]
    produced = tabletlog(
        c, "produce", "cli-e2e", "--key-sep", ":", "--json", stdin="\n".join(lines) + "\n"
    )
    assert produced.returncode == EXIT_OK, produced.stderr
    offsets = json_lines(produced.stdout)
    assert len(offsets) == 40
    for line, where in zip(lines, offsets, strict=True):
        assert where["tablet"] == tablet_for_key(line.split(":")[0].encode(), 2)

    consumed = tabletlog(c, "consume", "cli-e2e", "--json")
    assert consumed.returncode == EXIT_OK, consumed.stderr
    records = json_lines(consumed.stdout)
    assert sorted(r["value"] for r in records) == sorted(line.split(":", 1)[1] for line in lines)
    for record in records:
        assert record["tablet"] == tablet_for_key(record["key"].encode(), 2)
        assert {"tablet": record["tablet"], "offset": record["offset"]} in offsets
    for tablet in (0, 1):  # per tablet, the order of production is kept
        produced_order = [
            line.split(":", 1)[1]
            for line, w in zip(lines, offsets, strict=True)
            if w["tablet"] == tablet
        ]
        assert [r["value"] for r in records if r["tablet"] == tablet] == produced_order

    one = tabletlog(c, "consume", "cli-e2e", "--tablet", "0", "--from", "2", "--max", "3")
    assert one.returncode == EXIT_OK, one.stderr
    assert len(one.stdout.splitlines()) == 3

    status = tabletlog(c, "status", "--json")
    assert status.returncode == EXIT_OK, status.stderr
    doc = json.loads(status.stdout)
    (log,) = [entry for entry in doc["logs"] if entry["name"] == "cli-e2e"]
    assert sum(t["high_watermark"] for t in log["tablets"]) == 40
    assert all(t["leader"] in c.nodes for t in log["tablets"])
    human = tabletlog(c, "status")
    assert human.returncode == EXIT_OK and "cli-e2e" in human.stdout

    listed = tabletlog(c, "log", "list", "--json")
    assert "cli-e2e" in json.loads(listed.stdout)["logs"]
    described = tabletlog(c, "log", "describe", "cli-e2e")
    assert described.returncode == EXIT_OK and "leader" in described.stdout

    deleted = tabletlog(c, "log", "delete", "cli-e2e")
    assert deleted.returncode == EXIT_OK, deleted.stderr
    gone = tabletlog(c, "log", "describe", "cli-e2e")
    assert gone.returncode == EXIT_CLUSTER
    assert "not_found" in gone.stderr


def test_consumer_group_resumes_where_it_committed(shared_cluster: Cluster) -> None:
    c = shared_cluster
    assert tabletlog(c, "log", "create", "cli-group", "--tablets", "1").returncode == EXIT_OK
    stdin = "".join(f"m{i}\n" for i in range(10))
    assert tabletlog(c, "produce", "cli-group", stdin=stdin).returncode == EXIT_OK
    first = tabletlog(c, "consume", "cli-group", "--group", "g1", "--max", "4")
    assert first.stdout.splitlines() == ["m0", "m1", "m2", "m3"]
    rest = tabletlog(c, "consume", "cli-group", "--group", "g1")
    assert rest.stdout.splitlines() == [f"m{i}" for i in range(4, 10)]
    latest = tabletlog(c, "consume", "cli-group", "--from", "latest")
    assert latest.returncode == EXIT_OK and latest.stdout == ""


def test_exit_codes(shared_cluster: Cluster) -> None:
    c = shared_cluster
    missing = tabletlog(c, "produce", "no-such-log", stdin="x\n")
    assert missing.returncode == EXIT_CLUSTER
    assert missing.stderr.count("\n") == 1
    bad_tablet = tabletlog(c, "consume", "no-such-log", "--tablet", "0")
    assert bad_tablet.returncode == EXIT_CLUSTER
    usage = tabletlog(c, "log", "create", "x", "--tablets", "zero")
    assert usage.returncode == EXIT_USAGE
    dead = ",".join(f"127.0.0.1:{p}" for p in free_ports(2))
    unreachable = tabletlog(None, "status", bootstrap=dead)
    assert unreachable.returncode == EXIT_UNREACHABLE
    assert unreachable.stderr.startswith("tabletlog: error: no node answered")


def test_bench_reports_throughput(shared_cluster: Cluster) -> None:
    result = tabletlog(
        shared_cluster,
        "bench",
        "--records",
        "2000",
        "--size",
        "50",
        "--batch",
        "200",
        "--log",
        "cli-bench",
        "--json",
    )
    assert result.returncode == EXIT_OK, result.stderr
    summary = json.loads(result.stdout)
    assert summary["records"] == 2000
    assert summary["records_per_s"] > 0
    assert summary["batch_latency_ms_p99"] >= summary["batch_latency_ms_p50"] > 0
