"""The fault verbs of the test cluster, mixed into :class:`testkit.cluster.Cluster`.

``pause``/``resume`` (SIGSTOP/SIGCONT one node), ``crash_all`` (SIGKILL every node at once),
``stop_all`` (SIGTERM every node at once), ``corrupt`` (run a corruptor on a stopped node's
tablet directory), ``partition``/``heal`` (for a cluster created with a
:class:`testkit.netns.NetnsLab`: each node in its own network namespace), and ``crashed_nodes``
(nodes that exited without the test asking them to). Every fault injected is appended to
``faults``. Used by the fault-injection suite (``tests/faults``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from testkit.netns import NetnsLab
from testkit.node_process import NodeProcess


class ClusterFaults:
    """Fault verbs over the cluster's ``nodes`` (``Cluster`` provides the attributes)."""

    nodes: dict[str, NodeProcess]
    faults: list[str]
    lab: NetnsLab | None

    def pause(self, node_id: str) -> None:
        node = self.nodes[node_id]
        assert node.proc is not None
        os.kill(node.proc.pid, signal.SIGSTOP)
        node.paused = True
        self.faults.append(f"pause {node_id}")

    def resume(self, node_id: str) -> None:
        node = self.nodes[node_id]
        assert node.proc is not None
        os.kill(node.proc.pid, signal.SIGCONT)
        node.paused = False

    def crashed_nodes(self) -> list[str]:
        """Nodes whose process exited although the test did not kill or stop them."""
        return [
            n.id
            for n in self.nodes.values()
            if n.proc is not None and n.proc.poll() is not None and not n.down_on_purpose
        ]

    def crash_all(self) -> None:
        """SIGKILL every running node at once (all signals first, then the waits)."""
        live = [n for n in self.nodes.values() if n.running]
        for node in live:
            assert node.proc is not None
            node.proc.kill()  # also kills a stopped (paused) process
        for node in live:
            assert node.proc is not None
            node.proc.wait(10)
            node.paused = False
            node.down_on_purpose = True
        self.faults.append("kill all")

    def stop_all(self, timeout_s: float = 20.0) -> dict[str, int | None]:
        """SIGTERM every running node at once and wait for them; returns the exit codes.

        A node still running after ``timeout_s`` is killed, then AssertionError is raised.
        """
        live = [n for n in self.nodes.values() if n.running]
        for node in live:
            assert node.proc is not None
            if node.paused:
                self.resume(node.id)
            node.down_on_purpose = True
            node.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        codes: dict[str, int | None] = {}
        stuck: list[str] = []
        for node in live:
            assert node.proc is not None
            try:
                codes[node.id] = node.proc.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                node.proc.kill()
                node.proc.wait(10)
                stuck.append(node.id)
        self.faults.append("stop all")
        if stuck:
            raise AssertionError(f"{stuck} did not stop within {timeout_s} s of SIGTERM")
        return codes

    def tablet_dir(self, node_id: str, log: str, tablet: int) -> Path:
        """Where ``node_id`` keeps its replica of ``log``/``tablet`` (segments, checkpoints)."""
        return self.nodes[node_id].data_dir / "tablets" / log / f"tablet-{tablet}"

    def corrupt(self, node_id: str, log: str, tablet: int, corruptor: Callable[[Path], str]) -> str:
        """Run ``corruptor`` on a stopped node's tablet directory; returns what it did."""
        node = self.nodes[node_id]
        assert not node.running, f"stop {node_id} before corrupting its files"
        what = corruptor(self.tablet_dir(node_id, log, tablet))
        self.faults.append(f"corrupt {node_id} {log}/{tablet}: {what}")
        return what

    def machine_of(self, node_id: str) -> int:
        """The NetnsLab machine number of ``node_id`` (``n<k>`` runs on machine k)."""
        return list(self.nodes).index(node_id) + 1

    def partition(self, node_id: str, *, from_client: bool = False) -> None:
        """Cut ``node_id`` off from every other node (needs ``lab``); with ``from_client``,
        from the test process too (NetnsLab.partition's ``from_root``)."""
        self._require_lab().partition(self.machine_of(node_id), from_root=from_client)
        self.faults.append(
            f"partition {node_id}" + (" (and from the client)" if from_client else "")
        )

    def heal(self) -> None:
        """Undo every ``partition``."""
        if self.lab is not None:
            self.lab.heal()

    def _require_lab(self) -> NetnsLab:
        if self.lab is None:
            raise RuntimeError("partition needs a cluster created with lab=NetnsLab(...)")
        return self.lab
