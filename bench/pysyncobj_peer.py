"""pysyncobj alone, every record through Raft: the naive design tabletlog must beat.

Three processes on loopback each run a ``SyncObj`` whose state machine is a Python list; a
``@replicated extend(payloads)`` command appends one batch of 100-byte payloads. The load is
generated *inside the leader process* (no client hop, no HTTP), so these rows are the best this
design can do. The journal is pysyncobj's FileJournal (mmap, never fsynced); log compaction is off.

Configurations: appendEntriesUseBatch True (the default: one AppendEntries per 0.1 s tick) or
False (one per command), window 1 or 1000 commands in flight, 1 or 100 payloads per command.
Every payload in a command is a distinct object: an earlier run reused one object 100 times,
pickle memoised it, and the figure came out 4x too high.

Checks reported in the notes: each node's applied count at stop (followers may lag, never lead),
and how often pysyncobj 0.3.17 logged "truncating already-applied log entries" (a follower
receiving entries it already has, resent by the same leader; seen under load here, with no
follower ever ahead of the leader).

Run alone: ``python -m bench.pysyncobj_peer [--quick]``. The same module is the child process
(``--node``), so parent and children always run the same code.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, replicated

from bench.procs import die_with_parent
from bench.report import Result, latency_ms, print_table, replicate_key
from testkit.ports import free_ports

PAYLOAD_SIZE = 100
REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Config:
    """One benchmark configuration; ``ae_batch`` is pysyncobj's appendEntriesUseBatch."""

    ae_batch: bool
    window: int
    batch: int

    @property
    def system(self) -> str:
        """Row system name: the AE mode is what changes pysyncobj's behaviour most."""
        return "pysyncobj " + ("(AE tick 0.1 s)" if self.ae_batch else "(AE per command)")


ALL_CONFIGS = tuple(Config(ae, w, b) for ae in (True, False) for w in (1, 1000) for b in (1, 100))


# ---------------------------------------------------------------- child process (one Raft node)


class ListLog(SyncObj):  # type: ignore[misc]  # pysyncobj is untyped
    """The naive replicated log: a Python list, one Raft entry per ``extend`` command."""

    def __init__(self, addr: str, partners: list[str], conf: Any) -> None:
        super().__init__(addr, partners, conf)
        self.entries: list[bytes] = []

    @replicated  # type: ignore[untyped-decorator]
    def extend(self, payloads: list[bytes]) -> int:
        """Append one batch; runs on every node once the command is committed."""
        self.entries.extend(payloads)
        return len(self.entries)


def _make_node(me: int, ports: list[int], ae_batch: bool, data_dir: Path) -> ListLog:
    """One node with a file journal (never fsynced by pysyncobj) and log compaction off."""
    conf = SyncObjConf(
        appendEntriesUseBatch=ae_batch,
        journalFile=str(data_dir / f"n{me}.jrnl"),
        logCompactionMinEntries=2**62,
        logCompactionMinTime=10**9,
        commandsQueueSize=1_000_000,
    )
    addrs = [f"127.0.0.1:{p}" for p in ports]
    return ListLog(addrs[me], [a for i, a in enumerate(addrs) if i != me], conf)


def _leader_load(node: ListLog, cfg: Config, max_secs: float, max_payloads: int) -> dict[str, Any]:
    """Keep ``cfg.window`` commands in flight until the time or payload limit; a command counts
    when its callback reports SUCCESS (majority commit, applied on the leader)."""
    pool = [os.urandom(PAYLOAD_SIZE) for _ in range(max(10_000, cfg.batch))]
    sem = threading.Semaphore(cfg.window)
    lat: list[float] = []
    errors = [0]
    last = [0.0]

    def done(t0: float, _result: Any, err: int) -> None:  # runs on pysyncobj's tick thread
        now = time.perf_counter()
        if err == FAIL_REASON.SUCCESS:
            lat.append(now - t0)
            last[0] = now
        else:
            errors[0] += 1
        sem.release()

    cpu0 = time.process_time()
    t_start = time.perf_counter()
    deadline = t_start + max_secs
    sent = pos = 0
    while sent * cfg.batch < max_payloads and time.perf_counter() < deadline:
        if not sem.acquire(timeout=0.05):
            continue
        if pos + cfg.batch > len(pool):
            pos = 0
        batch = pool[pos : pos + cfg.batch]  # distinct objects: no pickle memo sharing
        pos += cfg.batch
        node.extend(batch, callback=functools.partial(done, time.perf_counter()))
        sent += 1
    drain_deadline = time.perf_counter() + 30
    for _ in range(cfg.window):  # wait for every outstanding callback
        if not sem.acquire(timeout=max(0.0, drain_deadline - time.perf_counter())):
            break
    elapsed = (last[0] or time.perf_counter()) - t_start
    cpu = time.process_time() - cpu0
    p50, p99 = latency_ms(lat)
    return {
        "cmds": len(lat),
        "sent": sent,
        "errors": errors[0],
        "elapsed": elapsed,
        "p50_ms": p50,
        "p99_ms": p99,
        "leader_cpu_pct": 100 * cpu / elapsed,
        "applied": len(node.entries),
    }


def child_main(args: argparse.Namespace) -> None:
    """One Raft node: wait for an election; the leader runs the load and writes the result."""
    ports = [int(p) for p in args.ports.split(",")]
    cfg = Config(bool(args.ae_batch), args.window, args.batch)
    data_dir = Path(args.dir)
    node = _make_node(args.node, ports, cfg.ae_batch, data_dir)

    def on_term(_sig: int, _frame: FrameType | None) -> None:
        # Report how far this node got so the parent can compare replicas, then leave at once.
        with contextlib.suppress(OSError):
            (data_dir / f"applied.{args.node}").write_text(str(len(node.entries)))
        os._exit(0)

    signal.signal(signal.SIGTERM, on_term)
    hard_stop = time.monotonic() + args.max_secs + 60  # never outlive a crashed parent for long
    deadline = time.monotonic() + 15
    while node._getLeader() is None or not node.isReady():
        if time.monotonic() > deadline:
            sys.exit("no leader elected within 15 s")
        time.sleep(0.01)
    if node._isLeader():
        res = {"node": args.node, **_leader_load(node, cfg, args.max_secs, args.max_payloads)}
        tmp = Path(args.out + ".tmp")
        tmp.write_text(json.dumps(res))
        tmp.replace(args.out)
    while time.monotonic() < hard_stop:
        time.sleep(0.2)


# ---------------------------------------------------------------- parent (orchestration)


def _start_nodes(
    cfg: Config, max_secs: float, max_payloads: int, tmp: Path, out: Path
) -> list[subprocess.Popen[bytes]]:
    """Spawn the 3 Raft node processes; their stdout/stderr go to node<i>.log in ``tmp``."""
    ports = free_ports(3)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    procs: list[subprocess.Popen[bytes]] = []
    for i in range(3):
        cmd = [
            sys.executable,
            "-m",
            "bench.pysyncobj_peer",
            "--node",
            str(i),
            "--ports",
            ",".join(map(str, ports)),
            "--ae-batch",
            str(int(cfg.ae_batch)),
            "--window",
            str(cfg.window),
            "--batch",
            str(cfg.batch),
            "--max-secs",
            str(max_secs),
            "--max-payloads",
            str(max_payloads),
            "--dir",
            str(tmp),
            "--out",
            str(out),
        ]
        with (tmp / f"node{i}.log").open("wb") as log:
            procs.append(
                subprocess.Popen(
                    die_with_parent(cmd),
                    cwd=REPO_ROOT,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
    return procs


def run_config(cfg: Config, max_secs: float, max_payloads: int) -> Result:
    """Start 3 fresh nodes, wait for the leader's result, stop all 3 (SIGTERM, then SIGKILL).

    After the load every node reports how many payloads it applied: followers may lag the
    leader (pysyncobj applies on the next AppendEntries) but must never be ahead of it.
    """
    with tempfile.TemporaryDirectory(prefix="tabletlog-pysyncobj-") as tmp_name:
        tmp = Path(tmp_name)
        out = tmp / "result.json"
        procs: list[subprocess.Popen[bytes]] = []
        try:
            procs = _start_nodes(cfg, max_secs, max_payloads, tmp, out)
            deadline = time.monotonic() + max_secs + 60
            while not out.exists():
                if time.monotonic() > deadline or all(p.poll() is not None for p in procs):
                    logs = "\n".join(
                        f.read_text(errors="replace")[-600:] for f in sorted(tmp.glob("node*.log"))
                    )
                    raise RuntimeError(f"pysyncobj run {cfg} produced no result:\n{logs}")
                time.sleep(0.05)
            res = json.loads(out.read_text())
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(timeout=3)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        applied = {int(f.suffix[1:]): int(f.read_text() or 0) for f in tmp.glob("applied.*")}
        truncations = sum(
            f.read_text(errors="replace").count("truncating already-applied")
            for f in tmp.glob("node*.log")
        )
    leader = res["node"]
    followers = [v for k, v in sorted(applied.items()) if k != leader]
    payloads = res["cmds"] * cfg.batch
    el = res["elapsed"]
    notes = [
        f"{res['cmds']} cmds, leader cpu {res['leader_cpu_pct']:.0f}%",
        f"at stop leader applied {applied.get(leader, res['applied'])}, followers "
        + "/".join(map(str, followers)),
    ]
    if any(f > applied.get(leader, res["applied"]) for f in followers):
        notes.append("FOLLOWER AHEAD OF LEADER (diverged)")
    if truncations:
        notes.append(f"pysyncobj logged {truncations} 'truncating already-applied' warnings")
    if res["errors"]:
        notes.append(f"{res['errors']} failed cmds")
    ae = "AE tick" if cfg.ae_batch else "AE per cmd"
    return Result(
        f"{ae}, window {cfg.window}, {cfg.batch} x 100 B/cmd",
        cfg.system,
        replicate_key(cfg.window, cfg.batch, PAYLOAD_SIZE),
        msgs_per_s=payloads / el,
        mb_per_s=payloads * PAYLOAD_SIZE / el / 1e6,
        p50_ms=res["p50_ms"],
        p99_ms=res["p99_ms"],
        notes="; ".join(notes),
        extra={
            "cmds_per_s": res["cmds"] / el,
            "applied": applied,
            "truncation_warnings": truncations,
            **res,
        },
    )


def run(quick: bool = False, configs: tuple[Config, ...] = ALL_CONFIGS) -> list[Result]:
    """Every configuration in a fresh 3-process cluster: ~50 s in total, ~25 s with quick."""
    secs = 1.0 if quick else 4.0
    return [run_config(cfg, secs, 2_000_000) for cfg in configs]


def main() -> None:
    """CLI: without --node, run the benchmark; with --node, be one Raft node (internal)."""
    ap = argparse.ArgumentParser(description="pysyncobj naive-design peer benchmark")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--node", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--ports", help=argparse.SUPPRESS)
    ap.add_argument("--ae-batch", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--window", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--max-secs", type=float, default=4.0, help=argparse.SUPPRESS)
    ap.add_argument("--max-payloads", type=int, default=2_000_000, help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.node is not None:
        child_main(args)
        return
    t0 = time.monotonic()
    rows = run(quick=args.quick)
    print_table(rows, title=f"pysyncobj peer ({time.monotonic() - t0:.0f} s)")


if __name__ == "__main__":
    main()
