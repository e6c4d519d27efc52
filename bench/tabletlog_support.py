"""Support for the tabletlog benchmark: load-generator processes, CPU meters, row notes.

``LoadWorker`` starts one ``bench.tabletlog_load`` child (``setpriv --pdeathsig`` so it dies
with the benchmark) and talks JSON lines with it. ``CpuMeter`` reads the CPU time of the node
processes and of the whole machine over a span, which is how every row says how noisy the
shared machine was while it was measured.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.procs import die_with_parent
from bench.report import Result, median

try:
    import psutil
except ImportError:  # CPU figures are a nice-to-have
    psutil = None

SYSTEM = "tabletlog R3"
REPO_ROOT = Path(__file__).resolve().parent.parent


class LoadWorker:
    """One ``bench.tabletlog_load`` child: JSON commands on stdin, JSON answers on stdout."""

    def __init__(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        self.proc = subprocess.Popen(
            die_with_parent([sys.executable, "-m", "bench.tabletlog_load"]),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=REPO_ROOT,
            env=env,
            text=True,
        )
        self.pid = int(self.receive(30)["ready"])

    def send(self, cmd: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def receive(self, timeout_s: float) -> dict[str, Any]:
        """The next answer line; raises TimeoutError, or RuntimeError for an error answer."""
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout_s):
                raise TimeoutError(f"load generator gave no answer within {timeout_s:.0f} s")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"load generator exited (rc={self.proc.poll()})")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"load generator: {answer['error']}")
        return answer

    def call(self, cmd: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        self.send(cmd)
        return self.receive(timeout_s)

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.send({"op": "exit"})
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


class CpuMeter:
    """CPU seconds of the node processes over a span, as % of one core (the box has 200%),
    and how busy the whole machine was meanwhile (other people's tests included)."""

    def __init__(self, pids: list[int]) -> None:
        self.procs = [psutil.Process(p) for p in pids] if psutil is not None else []
        self.t0 = time.perf_counter()
        self.start = sum(self._cpu(p) for p in self.procs)
        self.machine0 = self._machine()

    @staticmethod
    def _machine() -> float:
        if psutil is None:
            return 0.0
        t = psutil.cpu_times()
        return float(sum(t) - t.idle - getattr(t, "iowait", 0.0))

    def machine_pct(self) -> float | None:
        """Busy CPU of the whole machine over the span, % of one core."""
        if psutil is None:
            return None
        return 100 * (self._machine() - self.machine0) / (time.perf_counter() - self.t0)

    @staticmethod
    def _cpu(p: Any) -> float:
        try:
            t = p.cpu_times()
            return float(t.user + t.system)
        except Exception:
            return 0.0

    def pct(self) -> float | None:
        if not self.procs:
            return None
        used = sum(self._cpu(p) for p in self.procs) - self.start
        return 100 * used / (time.perf_counter() - self.t0)

    def read(self) -> dict[str, float | None]:
        """``nodes_cpu`` and ``machine_cpu`` since the meter started (% of one core)."""
        return {"nodes_cpu": self.pct(), "machine_cpu": self.machine_pct()}


def cpu_fields(r: dict[str, Any]) -> dict[str, float | None]:
    """The CPU figures of a measurement, as stored in a row's ``extra["cpu"]``."""
    return {k: r.get(k) for k in ("loadgen_cpu", "nodes_cpu", "machine_cpu")}


def noise_note(rows: list[Result], load_before: float, load_after: float) -> Result:
    """How busy the shared machine was with other people's work while we measured."""
    others = [
        c["machine_cpu"] - c["nodes_cpu"] - c["loadgen_cpu"]
        for r in rows
        if (c := r.extra.get("cpu")) and None not in c.values()
    ]
    cores = os.cpu_count() or 1
    text = (
        f"{code_version()}; machine noise: load average {load_before:.1f} before, "
        f"{load_after:.1f} after ({cores} vCPUs)"
    )
    if others:
        text += (
            f"; processes other than this benchmark's used {median(others):.0f}% CPU "
            f"(median over rows, max {max(others):.0f}%, of {100 * cores}%)"
        )
    return Result("note", SYSTEM, "-", notes=text, extra={"others_cpu": others})


def code_version() -> str:
    """'commit abc1234' (+ a warning when product code has uncommitted changes)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            text=True,
            capture_output=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "storage", "replication", "node", "client"],
            cwd=REPO_ROOT,
            text=True,
            capture_output=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "commit unknown"
    return f"commit {head}" + (" + uncommitted product changes" if dirty else "")


def cpu_note(r: dict[str, Any]) -> str:
    """'cpu loadgen 12% nodes 102% (machine 190% busy of 200%)', all in % of one core."""
    nodes, machine = r.get("nodes_cpu"), r.get("machine_cpu")
    out = f"cpu loadgen {r['loadgen_cpu']:.0f}%"
    if nodes is not None:
        out += f" nodes {nodes:.0f}%"
    if machine is not None:
        out += f" (machine {machine:.0f}% busy of {100 * (os.cpu_count() or 1)}%)"
    return out
