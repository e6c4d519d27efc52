"""``make bench``: machine limits, tabletlog, NATS JetStream and pysyncobj, one table, one run.

The machines are shared and noisy, so every system is measured in the same run and compared by
ratio. Sections run one after another (never concurrently: they would steal each other's 2 vCPUs)
in this order: machine limits, tabletlog, NATS, pysyncobj. A failing section becomes a FAILED row
and the others still run; the exit status is 1 if any section failed.

tabletlog hook: ``bench/tabletlog_bench.py`` must define ::

    def run(quick: bool) -> list[bench.report.Result]: ...

It should start its own 3-node cluster (and kill it in a ``finally``), stay bounded in time, and
use the workload keys from ``bench.report`` (``produce_key(100, 1024)``, ``consume_key(100)``,
``FAILOVER``, ``replicate_key(1000, 100)``) with ``system="tabletlog ..."`` so the ratio columns
line up against NATS and pysyncobj. Until the module exists the section is skipped with a note.

Usage: ``python -m bench.run_all [--quick] [--only machine,tabletlog,nats,pysyncobj]
[--json PATH] [--no-install]``.
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from bench import machine, pysyncobj_peer
from bench.report import RESULTS_DIR, Result, print_table, write_json

SECTIONS = ("machine", "tabletlog", "nats", "pysyncobj")
TABLETLOG_MODULE = "bench.tabletlog_bench"
SETUP = Path(__file__).resolve().parent / "setup.sh"


def run_tabletlog(quick: bool, module: str = TABLETLOG_MODULE) -> list[Result]:
    """Call ``<module>.run(quick)``; a note row if the module is not written yet."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name != module:
            raise  # the module exists but one of its imports is missing: that is a failure
        return [
            Result(
                "skipped",
                "tabletlog",
                "-",
                notes=f"{module} not written yet "
                "(hook: def run(quick: bool) -> list[bench.report.Result])",
            )
        ]
    run_fn = cast(Callable[[bool], list[Result]], mod.run)
    return run_fn(quick)


def run_nats(quick: bool, auto_install: bool) -> list[Result]:
    """NATS rows; installs nats-server/nats-py through bench/setup.sh first if allowed."""
    try:
        importlib.import_module("nats")
    except ModuleNotFoundError:
        if not auto_install:
            raise RuntimeError("nats-py missing; run: bash bench/setup.sh") from None
        subprocess.run(["bash", str(SETUP)], check=True, timeout=900)
        importlib.invalidate_caches()
    from bench import nats_peer  # noqa: PLC0415  (needs nats-py, which setup.sh may just have installed)

    return nats_peer.run(quick=quick, auto_install=auto_install)


def run_machine(quick: bool, disk_dir: str | None) -> list[Result]:
    """Machine-limit rows (disk tests in ``disk_dir``, default the system temp dir)."""
    return machine.run(quick=quick, directory=disk_dir)


def run_pysyncobj(quick: bool) -> list[Result]:
    """pysyncobj naive-design rows."""
    return pysyncobj_peer.run(quick=quick)


def main(argv: list[str] | None = None) -> int:
    """Run the selected sections, print the table, write the JSON; 1 if any section failed."""
    ap = argparse.ArgumentParser(description="tabletlog benchmarks vs the machine and peers")
    ap.add_argument(
        "--quick",
        action="store_true",
        help="short runs: about 1.5 minutes in total instead of about 4",
    )
    ap.add_argument(
        "--only",
        default=",".join(SECTIONS),
        help=f"comma list of sections to run, from: {','.join(SECTIONS)}",
    )
    ap.add_argument(
        "--json",
        type=Path,
        default=None,
        help="where to write the results (default bench/results/bench-<time>.json)",
    )
    ap.add_argument(
        "--no-install",
        action="store_true",
        help="do not run bench/setup.sh when nats-server or nats-py is missing",
    )
    ap.add_argument(
        "--disk-dir",
        default=None,
        help="directory for the machine disk tests (default: system temp dir)",
    )
    ap.add_argument("--tabletlog-module", default=TABLETLOG_MODULE, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(only) - set(SECTIONS))
    if unknown:
        ap.error(f"unknown section(s) {unknown}; choose from {SECTIONS}")

    runners: dict[str, Callable[[], list[Result]]] = {
        "machine": lambda: run_machine(args.quick, args.disk_dir),
        "tabletlog": lambda: run_tabletlog(args.quick, args.tabletlog_module),
        "nats": lambda: run_nats(args.quick, not args.no_install),
        "pysyncobj": lambda: run_pysyncobj(args.quick),
    }
    results: list[Result] = []
    timings: dict[str, float] = {}
    failed: list[str] = []
    for section in SECTIONS:  # fixed order, whatever order --only lists them in
        if section not in only:
            continue
        print(f"[bench] {section} ...", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        try:
            results.extend(runners[section]())
        except Exception as e:
            failed.append(section)
            traceback.print_exc()
            results.append(Result("FAILED", section, "-", notes=f"{type(e).__name__}: {e}"[:300]))
        timings[section] = round(time.monotonic() - t0, 1)
        print(f"[bench] {section} done in {timings[section]:.0f} s", file=sys.stderr, flush=True)

    total = sum(timings.values())
    print_table(
        results,
        title=f"tabletlog bench{' (quick)' if args.quick else ''}: "
        f"{total:.0f} s, sections {timings}",
    )
    meta: dict[str, Any] = {
        "quick": args.quick,
        "sections": only,
        "timings_s": timings,
        "failed": failed,
        "argv": sys.argv,
    }
    path = write_json(results, args.json, meta)
    if args.json is None:  # a stable name for the README / CI to pick up
        (RESULTS_DIR / "latest.json").write_text(path.read_text())
    print(f"results: {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
