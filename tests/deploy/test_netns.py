"""Self-test of testkit/netns.py: addresses, reachability, partition/heal, cleanup, stale sweep.

Each machine runs a tiny TCP echo server; "reachable" means a TCP round trip succeeded.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit import netns
from testkit.netns import NetnsLab, netns_available

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(not netns_available(), reason="needs root and working `ip netns`"),
]

ECHO_PORT = 7700
ECHO_SERVER = textwrap.dedent(
    """
    import socket, sys, threading
    srv = socket.create_server((sys.argv[1], int(sys.argv[2])))
    print("ready", flush=True)
    def serve(conn):
        with conn:
            while data := conn.recv(1024):
                conn.sendall(data)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()
    """
)
ECHO_CLIENT = textwrap.dedent(
    """
    import socket, sys
    try:
        with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1.5) as s:
            s.sendall(b"ping")
            sys.exit(0 if s.recv(4) == b"ping" else 1)
    except OSError:
        sys.exit(1)
    """
)


def _echo_from(lab: NetnsLab, k: int | None, target: int) -> bool:
    """TCP round trip to machine ``target``'s echo server, from machine k or (None) the root."""
    argv = [sys.executable, "-c", ECHO_CLIENT, lab.address(target), str(ECHO_PORT)]
    if k is None:
        return subprocess.run(argv, timeout=10, check=False).returncode == 0
    argv = ["ip", "netns", "exec", lab.namespace(k), *argv]
    return subprocess.run(argv, timeout=10, check=False).returncode == 0


@pytest.fixture
def lab() -> Iterator[NetnsLab]:
    with NetnsLab(3) as created:
        servers = []
        try:
            for k in (1, 2, 3):
                server = created.run_in(
                    k,
                    [sys.executable, "-c", ECHO_SERVER, created.address(k), str(ECHO_PORT)],
                    stdout=subprocess.PIPE,
                )
                servers.append(server)
                assert server.stdout is not None
                assert server.stdout.readline().strip() == b"ready"
            yield created
        finally:
            for server in servers:
                server.kill()
                server.wait(timeout=10)
                if server.stdout is not None:
                    server.stdout.close()


def _links() -> str:
    return subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout


def _namespaces() -> str:
    return subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, check=True
    ).stdout


def test_every_machine_reaches_every_other_and_the_root_reaches_all(lab: NetnsLab) -> None:
    assert lab.address(1) != lab.address(2)
    assert lab.bridge_address.endswith(".254")
    for target in (1, 2, 3):
        assert _echo_from(lab, None, target), f"root cannot reach machine {target}"
        for source in (1, 2, 3):
            if source != target:
                assert _echo_from(lab, source, target), f"{source} cannot reach {target}"


def test_machines_have_no_route_out_of_the_lab(lab: NetnsLab) -> None:
    routes = lab.exec_in(1, ["ip", "route", "show"])
    assert "default" not in routes
    assert routes.strip().startswith(str(lab.subnet))


def test_partition_cuts_peers_both_ways_but_not_the_root_and_heal_restores(lab: NetnsLab) -> None:
    lab.partition(1)
    assert lab.cuts == {(1, 2), (1, 3)}
    assert not _echo_from(lab, 2, 1)
    assert not _echo_from(lab, 1, 2)
    assert not _echo_from(lab, 1, 3)
    assert _echo_from(lab, None, 1), "the test process must still reach a partitioned machine"
    assert _echo_from(lab, 2, 3), "the majority must still reach each other"
    lab.heal()
    assert lab.cuts == frozenset()
    for source, target in ((2, 1), (1, 2), (3, 1), (1, 3)):
        assert _echo_from(lab, source, target), f"{source} cannot reach {target} after heal"


def test_partition_from_root_cuts_the_test_process_too(lab: NetnsLab) -> None:
    lab.partition(2, from_root=True)
    assert lab.cut_from_root_machines == {2}
    assert not _echo_from(lab, None, 2)
    assert not _echo_from(lab, 1, 2)
    assert _echo_from(lab, None, 1) and _echo_from(lab, 1, 3)
    lab.heal()
    assert lab.cut_from_root_machines == frozenset()
    assert _echo_from(lab, None, 2) and _echo_from(lab, 1, 2)


def _root_routes() -> str:
    return subprocess.run(
        ["ip", "route", "show", "type", "blackhole"], capture_output=True, text=True, check=True
    ).stdout


def test_cleanup_removes_exactly_what_the_lab_created() -> None:
    before_links, before_ns, before_routes = _links(), _namespaces(), _root_routes()
    lab = NetnsLab(2).create()
    names = [lab.namespace(1), lab.namespace(2), f"tl{lab.run_id}br"]
    assert all(name in _links() + _namespaces() for name in names)
    lab.partition(2, from_root=True)
    assert f"{lab.address(2)} " in _root_routes()
    lab.cleanup()
    lab.cleanup()  # idempotent
    after_links, after_ns = _links(), _namespaces()
    assert not any(name in after_links + after_ns for name in names)
    assert sorted(after_ns.split("\n")) == sorted(before_ns.split("\n"))
    assert len(after_links.splitlines()) == len(before_links.splitlines())
    assert not (netns.STATE_DIR / f"{lab.run_id}.json").exists()
    assert _root_routes() == before_routes


def test_two_labs_at_once_get_distinct_names_and_subnets() -> None:
    with NetnsLab(1) as first, NetnsLab(1) as second:
        assert first.run_id != second.run_id
        assert first.subnet != second.subnet
        assert first.namespace(1) != second.namespace(1)


def test_a_new_lab_sweeps_the_leftovers_of_a_killed_run() -> None:
    script = textwrap.dedent(
        """
        import sys, time
        from testkit.netns import NetnsLab
        lab = NetnsLab(2).create()
        lab.partition(1, from_root=True)
        print(lab.run_id, lab.address(1), flush=True)
        time.sleep(600)
        """
    )
    repo = Path(__file__).resolve().parents[2]
    child = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=repo
    )
    try:
        assert child.stdout is not None
        run_id, address = child.stdout.readline().split()
        assert f"{address} " in _root_routes()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        if child.stdout is not None:
            child.stdout.close()
    assert f"tl{run_id}n1" in _namespaces()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and run_id not in netns.sweep_stale():
        time.sleep(0.1)
    assert f"tl{run_id}n1" not in _namespaces()
    assert f"tl{run_id}br" not in _links()
    assert f"{address} " not in _root_routes()
