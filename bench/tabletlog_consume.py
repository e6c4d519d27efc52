"""The tabletlog consume rows: one tablet read from offset 0 to its end, every record decoded.

The tablet is first filled with 1000-record batches (8 in flight), then read twice by a load
generator: through the raw endpoint with the next fetch pipelined, and through the Python
client's ``Consumer``. Both decode every record (``iter_records``, CRC checked), so the rows are
bound by the client's CPU on purpose: that is what a user gets.
"""

from __future__ import annotations

from bench.report import Result, consume_key, size_label
from bench.tabletlog_harness import Bench, ProduceConfig
from bench.tabletlog_support import SYSTEM, CpuMeter, cpu_note


def run_consume(bench: Bench, size: int) -> list[Result]:
    """Both consume rows for records of ``size`` bytes, on one fresh single-tablet log."""
    count = bench.plan.fill[size]
    rows: list[Result] = []
    with bench.log(f"consume-{size_label(size)}", tablets=1) as targets:
        fill = bench.produce(targets, size, ProduceConfig(1000, 8, 1), max_records=count)
        end = fill["records"]
        fill_note = (
            f"tablet filled with {end} records at {fill['rate']:,.0f}/s (1000-record batches x 8)"
        )
        target = targets[0]
        for mode, max_bytes, label in (
            ("pipelined", 4 << 20, "raw endpoint, pipelined"),
            ("client", 1 << 20, "client Consumer"),
        ):
            meter = CpuMeter(bench.node_pids())
            a = bench.workers[0].call(
                {
                    "op": "consume",
                    "address": target["address"],
                    "log": target["log"],
                    "tablet": 0,
                    "end": end,
                    "max_bytes": max_bytes,
                    "mode": mode,
                    "max_s": 30,
                },
                120,
            )
            cpu = {"loadgen_cpu": a["cpu_pct"], **meter.read()}
            note = (
                f"{label}, max_bytes {max_bytes >> 20} MiB, every record decoded "
                f"(iter_records, CRC checked); {a['records']} of {end}; " + cpu_note(cpu)
            )
            rows.append(
                Result(
                    f"consume {size} B, {label}",
                    SYSTEM,
                    consume_key(size),
                    msgs_per_s=a["records"] / a["seconds"],
                    mb_per_s=a["bytes"] / a["seconds"] / 1e6,
                    notes=f"{note}; {fill_note}",
                    extra={**a, "fill_rate": fill["rate"], "cpu": cpu},
                )
            )
    return rows
