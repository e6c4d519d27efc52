"""The Raft port against hostile and careless peers (issue 13, item 7), on real sockets.

Unit tests of the frame-prefix check, then a real 3-node metadata cluster
(``tests/replication/metadata_node.py``): a frame announced as 2 GiB is refused before it is
buffered, an idle unauthenticated connection is closed at the handshake deadline, and a node
whose descriptors run out (its RLIMIT_NOFILE lowered with ``prlimit``) keeps its listener, so
peers reconnect once descriptors are back.
"""

from __future__ import annotations

import functools
import resource
import socket
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pysyncobj import SyncObj, SyncObjConf

from replication.raft_transport import HardenedTransport, RaftPortLimits, first_bad_frame
from testkit.ports import free_port
from testkit.waiting import wait_until
from tests.replication.test_raft_cluster import TUNING, MetaCluster, wait_for_controller

HANDSHAKE_MS = 1000
MAX_FRAME = 8 * 1024 * 1024


def prefix(length: int) -> bytes:
    return struct.pack("i", length)


@pytest.mark.parametrize(
    ("buffer", "start", "expected"),
    [
        (b"", 0, (0, None)),
        (b"\x01\x00", 0, (0, None)),  # a partial prefix is checked when complete
        (prefix(10) + b"x" * 3, 0, (0, None)),  # incomplete frame: its header again next time
        (prefix(3) + b"abc", 0, (7, None)),  # one whole frame: checked past it
        (prefix(3) + b"abc" + prefix(2) + b"d", 0, (7, None)),
        (prefix(3) + b"abc" + prefix(2**31 - 1), 0, (7, 2**31 - 1)),  # the second one lies
        (prefix(2**31 - 1), 0, (0, 2**31 - 1)),
        (prefix(-5), 0, (0, -5)),
        (prefix(0), 0, (0, 0)),
        (prefix(MAX_FRAME), 0, (0, None)),
        (prefix(MAX_FRAME + 1), 0, (0, MAX_FRAME + 1)),
        (b"junk" + prefix(1) + b"z", 4, (9, None)),  # resumes at ``start``
    ],
)
def test_first_bad_frame(buffer: bytes, start: int, expected: tuple[int, int | None]) -> None:
    assert first_bad_frame(buffer, start, MAX_FRAME) == expected


class HardenedCluster(MetaCluster):
    """A metadata cluster with a short handshake deadline, so the tests wait ~1 s, not 5."""

    def config_path(self, node: str) -> Path:
        path = self.root / f"cluster-{node}.yaml"
        tuning: dict[str, Any] = {**TUNING, "raft_handshake_timeout_ms": HANDSHAKE_MS}
        config = {
            "cluster": {"name": "raft-test", "secret": self.secrets[node]},
            "nodes": list(self.nodes.values()),
            "tuning": tuning,
        }
        path.write_text(yaml.safe_dump(config))
        return path

    def raft_port(self, node: str) -> int:
        return int(self.nodes[node]["raft_port"])

    def raft_address(self, node: str) -> str:
        return f"127.0.0.1:{self.raft_port(node)}"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[HardenedCluster]:
    c = HardenedCluster(tmp_path)
    for node in c.ids:
        c.start(node)
    yield c
    c.close()
    print(c.logs())  # shown only when the test failed


def commits(c: HardenedCluster, name: str) -> None:
    """The cluster still elects a controller and commits a new log on every running node."""
    controller = wait_for_controller(c)
    reply = c.create_log(controller, name, tablets=1, replication_factor=1, min_insync_replicas=1)
    assert "tablets" in reply, reply
    wait_until(
        lambda: (
            all(name in s["view"]["logs"] for s in c.states().values())
            and len(c.states()) == len(c.procs)
        ),
        10,
        f"log {name} on every running node",
    )


def closed_by_peer(sock: socket.socket) -> bool:
    """Whether the node closed ``sock`` (EOF or reset); False while it is still open."""
    try:
        return sock.recv(4096) == b""
    except TimeoutError:
        return False
    except ConnectionError:
        return True


@pytest.mark.cluster
def test_a_huge_or_negative_frame_is_refused_before_buffering(cluster: HardenedCluster) -> None:
    wait_for_controller(cluster)
    for node in cluster.ids:
        for announced in (2**31 - 1, -1):
            with socket.create_connection(("127.0.0.1", cluster.raft_port(node))) as sock:
                sock.sendall(prefix(announced))
                sent = 0
                chunk = b"\x00" * (1 << 20)
                with pytest.raises(ConnectionError):  # the node closed it: a reset or a pipe
                    while sent < 128 * len(chunk):  # 128 MiB: it never gets that far
                        sock.sendall(chunk)
                        sent += len(chunk)
                assert sent < 64 * len(chunk), f"{node} buffered {sent} bytes of a lying frame"
    commits(cluster, "after-huge-frames")


@pytest.mark.cluster
def test_an_idle_unauthenticated_connection_is_closed_at_the_deadline(
    cluster: HardenedCluster,
) -> None:
    wait_for_controller(cluster)
    idle = [socket.create_connection(("127.0.0.1", cluster.raft_port(n))) for n in cluster.ids]
    try:
        for sock in idle:
            sock.settimeout(0.2)
        pending = list(idle)

        def all_closed() -> bool:
            pending[:] = [s for s in pending if not closed_by_peer(s)]
            return not pending

        wait_until(all_closed, 10 * HANDSHAKE_MS / 1000, "the nodes closed the idle connections")
    finally:
        for sock in idle:
            sock.close()
    commits(cluster, "after-idle")  # the peers' own connections were not affected


def lowest_free_fd(pid: int) -> int:
    used = {int(fd.name) for fd in Path(f"/proc/{pid}/fd").iterdir() if fd.name.isdigit()}
    fd = 0
    while fd in used:
        fd += 1
    return fd


@pytest.mark.cluster
def test_the_listener_survives_descriptor_exhaustion_and_peers_reconnect(
    cluster: HardenedCluster,
) -> None:
    """``accepting`` runs out of descriptors while ``peer`` restarts; ``peer`` has the larger
    Raft address, so pysyncobj has *it* connect to ``accepting``: only a listener that survived
    the exhaustion lets them form a quorum of two once descriptors are back."""
    wait_for_controller(cluster)
    accepting, third, peer = sorted(cluster.ids, key=cluster.raft_address)
    pid = cluster.procs[accepting].pid
    cluster.kill(peer)
    log_file = cluster.root / f"{accepting}.log"
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (lowest_free_fd(pid), hard))
    try:
        with socket.create_connection(("127.0.0.1", cluster.raft_port(accepting))) as probe:
            wait_until(
                lambda: "raft: accept failed" in log_file.read_text(),
                10,
                f"{accepting} reports its failed accept",
            )
            cluster.start(peer)  # its connections wait in the backlog or are refused
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
            probe.settimeout(0.2)
            wait_until(
                lambda: closed_by_peer(probe), 10, "the listener accepts again (and times out)"
            )
    finally:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
    assert cluster.procs[accepting].poll() is None, f"{accepting} died"
    cluster.kill(third)  # now only accepting + peer: they must have reconnected
    commits(cluster, "after-emfile")


@pytest.fixture
def lone_node() -> Iterator[int]:
    """An in-process pysyncobj member on the hardened transport: a long handshake deadline
    and room for only 4 connections in the handshake."""
    port = free_port()
    address = f"127.0.0.1:{port}"
    limits = RaftPortLimits(handshake_timeout_s=60, max_pending_connections=4)
    obj = SyncObj(
        address,
        [],
        SyncObjConf(password="secret", bindAddress=address),
        transportClass=functools.partial(HardenedTransport, limits=limits),
    )
    obj.waitBinded()
    yield port
    obj.destroy_synchronous()


def test_the_oldest_pending_connections_make_room_for_new_ones(lone_node: int) -> None:
    socks = []
    try:
        for _ in range(6):
            sock = socket.create_connection(("127.0.0.1", lone_node))
            sock.settimeout(0.2)
            socks.append(sock)  # the kernel's backlog is FIFO: the node accepts in this order
        oldest, newest = socks[:2], socks[2:]
        wait_until(lambda: all(closed_by_peer(s) for s in oldest), 10, "the oldest two closed")
        assert not any(closed_by_peer(s) for s in newest), "a newer connection was closed"
    finally:
        for sock in socks:
            sock.close()
