"""Measure: kill -9 of a node that is both controller and tablet leader → the map (read on a
survivor) names a new leader for that tablet. Real ``python -m node`` processes.

    python -m tests.replication.measure_failover [--tries 10]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from replication.auth import INTERNAL_TOKEN_HEADER, internal_token
from testkit.cluster import SECRET, Cluster
from testkit.http import http
from testkit.waiting import wait_until


def one_try(c: Cluster, first: str) -> float:
    def cluster_state() -> Any:
        return http("GET", f"{c.nodes[first].url}/v1/cluster", timeout_s=2)

    def healthy() -> str | None:
        state = cluster_state()
        tablets = http("GET", f"{c.nodes[first].url}/v1/logs/m", timeout_s=2)["tablets"]
        ok = all(n["alive"] for n in state["nodes"]) and all(
            len(t["isr"]) == 3 and t["leader"] for t in tablets
        )
        return state["controller"] if ok else None

    ctl = wait_until(healthy, 60, "a controller, every node alive, every ISR full")
    survivor = next(n for n in c.nodes if n != ctl)

    def tablets() -> list[dict[str, Any]]:
        return list(http("GET", f"{c.nodes[survivor].url}/v1/logs/m", timeout_s=2)["tablets"])

    led = [t for t in tablets() if t["leader"] == ctl]
    if not led:  # make the controller a tablet leader (as preferred-leader balancing would)
        t = tablets()[0]
        http(
            "POST",
            f"{c.nodes[ctl].url}/internal/controller/elect_leader",
            {
                "log": "m",
                "tablet": t["tablet"],
                "leader_epoch": t["leader_epoch"],
                "new_leader": ctl,
            },
            headers={INTERNAL_TOKEN_HEADER: internal_token(SECRET)},
        )
        led = wait_until(
            lambda: [t for t in tablets() if t["leader"] == ctl],
            10,
            "the controller leads a tablet",
        )
    tablet = led[0]
    killed = time.monotonic()
    c.kill(ctl)

    def moved() -> bool:
        now = tablets()[tablet["tablet"]]
        return bool(
            now["leader"] not in (None, ctl) and now["leader_epoch"] > tablet["leader_epoch"]
        )

    wait_until(moved, 30, "a new leader for the tablet", interval_s=0.005)
    took = time.monotonic() - killed
    c.start(ctl)
    return took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tries", type=int, default=10)
    args = parser.parse_args()
    samples: list[float] = []
    with Cluster.running(Path(tempfile.mkdtemp())) as c:
        first = next(iter(c.nodes))
        controller = wait_until(
            lambda: http("GET", f"{c.nodes[first].url}/v1/cluster")["controller"],
            20,
            "a controller",
        )
        http("POST", f"{c.nodes[controller].url}/v1/logs", {"name": "m", "tablets": 3})
        for attempt in range(args.tries):
            first = "n1" if attempt % 2 else "n2"
            samples.append(one_try(c, first))
            print(f"try {attempt + 1}: {samples[-1]:.3f} s", flush=True)
    print(
        f"median {statistics.median(samples):.3f} s, min {min(samples):.3f}, "
        f"max {max(samples):.3f} over {len(samples)}"
    )


if __name__ == "__main__":
    main()
