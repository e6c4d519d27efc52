"""The Raft port requires the cluster secret: a stranger's pickled frame runs nothing, and a
node configured with another secret can neither join nor disturb the cluster."""

from __future__ import annotations

import os
import pickle
import socket
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pysyncobj import SyncObj, SyncObjConf
from pysyncobj.encryptor import getEncryptor

from testkit.ports import free_port
from testkit.waiting import wait_until
from tests.replication.test_raft_cluster import MetaCluster, wait_for_controller

pytestmark = pytest.mark.cluster


class _Touch:
    """Unpickling this calls os.system: what an unauthenticated pysyncobj would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[[str], int], tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def frame(payload: bytes) -> bytes:
    """pysyncobj's wire framing: native int length, then the (maybe encrypted) message."""
    return struct.pack("i", len(payload)) + payload


def send_and_wait_for_close(port: int, data: bytes, timeout_s: float = 5) -> None:
    """Send ``data`` and wait until the node drops the connection (it read and refused it)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(data)
        sock.settimeout(timeout_s)
        while sock.recv(4096):
            pass


def assert_stays(predicate: Callable[[], bool], duration_s: float, message: str) -> None:
    deadline = time.monotonic() + duration_s
    while time.monotonic() < deadline:
        assert predicate(), message
        time.sleep(0.1)


@pytest.fixture
def open_syncobj() -> Iterator[int]:
    """A pysyncobj node *without* a password: the positive control of the exploit frame."""
    port = free_port()
    obj = SyncObj(f"127.0.0.1:{port}", [], SyncObjConf(bindAddress=f"127.0.0.1:{port}"))
    yield port
    obj.destroy_synchronous()


def test_exploit_frame_runs_code_on_an_unprotected_node(tmp_path: Path, open_syncobj: int) -> None:
    """Control: the frame used below really is remote code execution without a password."""
    marker = tmp_path / "pwned"
    evil = zlib.compress(pickle.dumps(_Touch(marker)))
    with socket.create_connection(("127.0.0.1", open_syncobj)) as sock:
        sock.sendall(frame(evil))
        wait_until(marker.exists, 5, "the unprotected node ran the pickled command")


def test_stranger_frames_run_nothing_and_the_cluster_keeps_working(tmp_path: Path) -> None:
    cluster = MetaCluster(tmp_path)
    try:
        for node in cluster.ids:
            cluster.start(node)
        controller = wait_for_controller(cluster)
        marker = tmp_path / "pwned"
        evil = zlib.compress(pickle.dumps(_Touch(marker)))
        wrong_key = getEncryptor("not-the-cluster-secret").encrypt(evil)
        for node in cluster.ids:
            port = int(cluster.nodes[node]["raft_port"])
            send_and_wait_for_close(port, frame(evil))
            send_and_wait_for_close(port, frame(wrong_key))
            send_and_wait_for_close(port, frame(b"\x00" * 64))
        assert not marker.exists(), "a node unpickled a stranger's frame"
        reply = cluster.create_log(controller, "after-attack", tablets=1)
        assert "tablets" in reply, reply
        wait_until(
            lambda: all("after-attack" in s["view"]["logs"] for s in cluster.states().values()),
            5,
            "the cluster still commits on every node",
        )
        assert not marker.exists()
    finally:
        cluster.close()


def test_a_node_with_a_wrong_secret_cannot_join(tmp_path: Path) -> None:
    cluster = MetaCluster(tmp_path)
    cluster.secrets["n3"] = "an-entirely-different-secret"
    try:
        for node in cluster.ids:
            cluster.start(node)
        good = ("n1", "n2")

        def controller_of_two() -> str | None:
            states = {n: cluster.state(n) for n in good}
            active = [n for n, s in states.items() if s["active"]]
            return active[0] if len(active) == 1 else None

        controller = wait_until(controller_of_two, 15, "n1 and n2 elect a controller alone")
        reply = cluster.create_log(
            controller, "members-only", tablets=1, replication_factor=2, min_insync_replicas=1
        )
        assert "tablets" in reply, reply
        assert all(r in good for r in reply["tablets"][0]["replicas"]), "n3 never registered"
        wait_until(
            lambda: all("members-only" in cluster.state(n)["view"]["logs"] for n in good),
            5,
            "the log on both members",
        )
        terms = {n: cluster.state(n)["status"]["raft_term"] for n in good}

        def n3_is_outside() -> bool:
            s = cluster.state("n3")
            return (
                not s["ready"]
                and s["status"]["raft_leader"] is None
                and s["view"]["applied_index"] == 0
                and not s["active"]
                and not cluster.state(controller)["view"]["nodes"]["n3"]["alive"]
            )

        assert_stays(n3_is_outside, 3, "n3 (wrong secret) learned something or joined")
        # n3 never disturbed the members' elections (no term inflation): its handshake does
        # not decrypt, so to pysyncobj it is connected to nobody
        assert {n: cluster.state(n)["status"]["raft_term"] for n in good} == terms
    finally:
        cluster.close()
