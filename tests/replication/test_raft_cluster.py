"""The metadata map on real processes: three voters on loopback running
``tests/replication/metadata_node.py`` (Raft + controller + controller routes, no data path).
Every wait is a deadline loop; nodes are killed with SIGKILL."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from replication.auth import INTERNAL_TOKEN_HEADER, internal_token
from testkit.http import HttpError, http
from testkit.ports import free_ports
from testkit.waiting import wait_until

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
SECRET = "raft-test-secret"
TUNING = {"heartbeat_interval_ms": 200, "session_timeout_ms": 2000}


class MetaCluster:
    """N metadata nodes as subprocesses; verbs: start, kill, restart; HTTP helpers."""

    def __init__(self, root: Path, size: int = 3, compaction_entries: int = 5000) -> None:
        self.root = root
        self.ids = [f"n{i}" for i in range(1, size + 1)]
        ports = free_ports(2 * size)
        self.nodes: dict[str, dict[str, Any]] = {
            n: {"id": n, "host": "127.0.0.1", "api_port": api, "raft_port": raft}
            for n, api, raft in zip(self.ids, ports[::2], ports[1::2], strict=True)
        }
        self.compaction_entries = compaction_entries
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.secrets = dict.fromkeys(self.ids, SECRET)

    def config_path(self, node: str) -> Path:
        path = self.root / f"cluster-{node}.yaml"
        path.write_text(
            yaml.safe_dump(
                {
                    "cluster": {"name": "raft-test", "secret": self.secrets[node]},
                    "nodes": list(self.nodes.values()),
                    "tuning": TUNING,
                }
            )
        )
        return path

    def start(self, node: str, *extra: str) -> None:
        with (self.root / f"{node}.log").open("ab") as log:
            self.procs[node] = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.replication.metadata_node",
                    "--config",
                    str(self.config_path(node)),
                    "--node",
                    node,
                    "--data-dir",
                    str(self.root / node),
                    "--compaction-entries",
                    str(self.compaction_entries),
                    *extra,
                ],
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def kill(self, node: str) -> None:
        proc = self.procs.pop(node)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def kill_all(self) -> None:
        for proc in self.procs.values():
            proc.send_signal(signal.SIGKILL)
        for proc in self.procs.values():
            proc.wait(timeout=10)
        self.procs.clear()

    def url(self, node: str, path: str) -> str:
        return f"http://127.0.0.1:{self.nodes[node]['api_port']}{path}"

    def call(self, node: str, path: str, body: Any = None, timeout_s: float = 5) -> Any:
        """GET (no body) or POST ``path`` with the internal token; an error answer comes back as
        its JSON body plus ``http_status``. Raises OSError when the node does not answer."""
        try:
            return http(
                "GET" if body is None else "POST",
                self.url(node, path),
                body,
                timeout_s=timeout_s,
                headers={INTERNAL_TOKEN_HEADER: internal_token(self.secrets[node])},
            )
        except HttpError as exc:
            return {"http_status": exc.status, **(exc.body if isinstance(exc.body, dict) else {})}

    def state(self, node: str) -> dict[str, Any]:
        return dict(self.call(node, "/debug/state"))

    def states(self) -> dict[str, dict[str, Any]]:
        out = {}
        for node in self.procs:
            try:
                out[node] = self.state(node)
            except OSError:
                pass
        return out

    def controller(self) -> str | None:
        """The node that is active controller, if exactly one is and all agree."""
        states = self.states()
        active = [n for n, s in states.items() if s["active"]]
        if len(active) != 1 or len(states) != len(self.procs):
            return None
        if any(s["view"]["controller"] != active[0] for s in states.values()):
            return None
        return active[0]

    def all_registered(self) -> bool:
        states = self.states()
        return len(states) == len(self.procs) and all(
            all(s["view"]["nodes"][n]["alive"] for n in self.procs) for s in states.values()
        )

    def create_log(self, controller: str, name: str, **settings: Any) -> Any:
        return self.call(
            controller, "/internal/controller/create_log", {"name": name, "settings": settings}
        )

    def close(self) -> None:
        for proc in self.procs.values():
            proc.kill()
        for proc in self.procs.values():
            proc.wait(timeout=10)
        self.procs.clear()

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text()[-4000:]}" for p in sorted(self.root.glob("*.log"))
        )


@pytest.fixture
def cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[MetaCluster]:
    c = MetaCluster(tmp_path, compaction_entries=getattr(request, "param", 5000))
    for node in c.ids:
        c.start(node)
    yield c
    c.close()
    print(c.logs())  # pytest shows it only when the test failed


def wait_for_controller(c: MetaCluster, timeout_s: float = 15) -> str:
    controller = wait_until(c.controller, timeout_s, "one active controller that all agree on")
    wait_until(c.all_registered, timeout_s, "every running node registered alive")
    return controller


def same_everywhere(c: MetaCluster, key: str) -> Any:
    values = [json.dumps(s["view"][key], sort_keys=True) for s in c.states().values()]
    return values[0] if len(values) == len(c.procs) and len(set(values)) == 1 else None


def test_three_voters_elect_a_controller_and_commit_on_all(cluster: MetaCluster) -> None:
    controller = wait_for_controller(cluster)
    reply = cluster.create_log(controller, "orders", tablets=3, replication_factor=3)
    assert [t["tablet"] for t in reply["tablets"]] == [0, 1, 2]
    assert sorted(t["leader"] for t in reply["tablets"]) == ["n1", "n2", "n3"]
    wait_until(
        lambda: (
            same_everywhere(cluster, "tablets")
            and all("orders" in s["view"]["logs"] for s in cluster.states().values())
        ),
        5,
        "the new log on every node",
    )
    # a non-controller names the controller instead of acting
    other = next(n for n in cluster.ids if n != controller)
    refused = cluster.create_log(other, "other")
    assert refused["http_status"] == 503 and refused["controller"] == controller
    # stale-term and garbage commands are recorded no-ops on every node
    term = cluster.state(controller)["view"]["controller_term"]
    before = same_everywhere(cluster, "tablets")
    stale = {"op": "delete_log", "v": 1, "term": term - 1, "name": "orders"}
    assert cluster.call(controller, "/debug/propose", stale)["error"] == "stale_term"
    garbage = {"op": "fence_node", "v": 1, "term": "x"}
    assert cluster.call(controller, "/debug/propose", garbage)["error"] == "bad_command"
    index = cluster.state(controller)["view"]["applied_index"]
    wait_until(
        lambda: all(s["view"]["applied_index"] >= index for s in cluster.states().values()),
        5,
        "no-ops applied everywhere",
    )
    assert same_everywhere(cluster, "tablets") == before
    assert all("orders" in s["view"]["logs"] for s in cluster.states().values())


def test_kill_of_the_controller_gives_a_new_one_that_moves_its_tablets(
    cluster: MetaCluster,
) -> None:
    controller = wait_for_controller(cluster)
    reply = cluster.create_log(controller, "events", tablets=3, replication_factor=3)
    led = {t["tablet"]: t for t in reply["tablets"] if t["leader"] == controller}
    assert led, "placement gives every node a tablet to lead"
    killed_at = time.monotonic()
    cluster.kill(controller)
    new = wait_until(cluster.controller, 10, "a new controller after kill -9 of the old one")
    elected_s = time.monotonic() - killed_at

    def moved() -> bool:
        tablets = {t["tablet"]: t for t in cluster.state(new)["view"]["tablets"]}
        return all(
            tablets[i]["leader"] not in (None, controller)
            and tablets[i]["leader_epoch"] > led[i]["leader_epoch"]
            and controller not in tablets[i]["isr"]
            for i in led
        )

    wait_until(moved, 10, "the dead controller's tablets led by live ISR members")
    moved_s = time.monotonic() - killed_at
    view = cluster.state(new)["view"]
    assert not view["nodes"][controller]["alive"]
    print(f"new controller after {elected_s:.2f} s, tablets moved after {moved_s:.2f} s")
    # the restarted node registers with a new incarnation and is alive again
    cluster.start(controller)
    wait_until(cluster.all_registered, 15, "the restarted node registered")


@pytest.mark.parametrize("cluster", [8], indirect=True)
def test_all_nodes_killed_at_once_many_times_keep_the_map(cluster: MetaCluster) -> None:
    """Small compaction threshold: snapshots and journal cuts happen between the kills."""
    expected_logs: dict[str, Any] = {}
    replicas: dict[tuple[str, int], list[str]] = {}
    epochs: dict[tuple[str, int], int] = {}
    for round_ in range(5):
        controller = wait_for_controller(cluster, timeout_s=20)
        name = f"log{round_}"
        reply = cluster.create_log(
            controller, name, tablets=2, replication_factor=2, min_insync_replicas=1
        )
        assert "tablets" in reply, reply
        view = cluster.state(controller)["view"]
        expected_logs = view["logs"]
        for t in view["tablets"]:
            key = (t["log"], t["tablet"])
            replicas[key] = t["replicas"]
            assert t["leader_epoch"] >= epochs.get(key, 0), "epochs never go back"
            epochs[key] = t["leader_epoch"]
        cluster.kill_all()
        for node in cluster.ids:
            cluster.start(node)

        def restored(expected_logs: dict[str, Any] = expected_logs) -> bool:
            states = cluster.states()
            if len(states) != 3 or not all(s["ready"] for s in states.values()):
                return False
            for s in states.values():
                got = {(t["log"], t["tablet"]): t["replicas"] for t in s["view"]["tablets"]}
                if s["view"]["logs"] != expected_logs or got != replicas:
                    return False
            return True

        wait_until(restored, 20, f"round {round_}: every log and assignment back on every node")
    dumps = [p for p in cluster.root.glob("n*/raft/dump")]
    assert dumps, "the journal was compacted into a snapshot at least once"


def test_a_paused_controller_is_deposed_and_its_commands_do_nothing(
    cluster: MetaCluster,
) -> None:
    """SIGSTOP the controller (a partition as seen from the others), let the rest fail over,
    then resume it: whatever it still tries under its old term has no effect."""
    old = wait_for_controller(cluster)
    reply = cluster.create_log(old, "kept", tablets=3, replication_factor=3)
    assert "tablets" in reply, reply
    old_term = cluster.state(old)["view"]["controller_term"]
    others = [n for n in cluster.ids if n != old]
    cluster.procs[old].send_signal(signal.SIGSTOP)
    try:

        def new_controller() -> str | None:
            states = {n: cluster.state(n) for n in others}
            active = [n for n, s in states.items() if s["active"]]
            return active[0] if len(active) == 1 else None

        new = wait_until(new_controller, 10, "the others elect a new controller")
        wait_until(
            lambda: not cluster.state(new)["view"]["nodes"][old]["alive"],
            10,
            "the silent old controller fenced after the session timeout",
        )
    finally:
        cluster.procs[old].send_signal(signal.SIGCONT)
    # the old controller's first words after waking up: a delete under its old term
    stale = {"op": "delete_log", "v": 1, "term": old_term, "name": "kept"}
    answer = cluster.call(old, "/debug/propose", stale, timeout_s=10)
    assert answer.get("ok") is not True, answer
    wait_until(lambda: not cluster.state(old)["active"], 5, "the old controller steps down")
    wait_until(
        lambda: cluster.state(old)["view"]["controller"] == new,
        10,
        "the old controller follows the new map",
    )
    wait_until(cluster.all_registered, 10, "the resumed node registered again")
    for state in cluster.states().values():
        assert "kept" in state["view"]["logs"]
        assert state["view"]["controller"] == new
        assert all(node["alive"] for node in state["view"]["nodes"].values()), (
            "the resumed controller fenced nobody"
        )


def test_a_non_voter_follows_the_map_as_an_observer(tmp_path: Path) -> None:
    """Room for a voter subset: n4 is in the cluster but not a Raft voter."""
    cluster = MetaCluster(tmp_path, size=4)
    try:
        for node in cluster.ids:
            cluster.start(node, "--voters", "n1,n2,n3")
        controller = wait_for_controller(cluster)
        assert controller != "n4"
        reply = cluster.create_log(
            controller, "seen", tablets=4, replication_factor=2, min_insync_replicas=1
        )
        assert any(t["leader"] == "n4" for t in reply["tablets"]), "n4 hosts replicas"
        wait_until(
            lambda: "seen" in cluster.state("n4")["view"]["logs"] and cluster.state("n4")["ready"],
            10,
            "the observer applies the map",
        )
        status = cluster.state("n4")["status"]
        assert not status["is_raft_leader"] and status["raft_leader"] == controller
        cluster.kill("n4")  # losing the observer costs the voters nothing
        reply = cluster.create_log(
            controller, "after", tablets=1, replication_factor=2, min_insync_replicas=1
        )
        assert "tablets" in reply, reply
    finally:
        cluster.close()
