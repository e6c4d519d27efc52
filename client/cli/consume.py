"""``tabletlog consume LOG``: print records of one tablet or of all, from a start position.

Without ``--follow`` it stops once every tablet is read up to its high watermark; with it, it
long-polls until Ctrl-C (which ends it normally, exit 0). All tablets are read concurrently and
printed as they arrive: order holds within a tablet, not across tablets. With ``--group`` each
tablet starts from the group's committed offset (``--from`` applies to tablets never
committed), and the offsets after the printed records are committed every second and at the end.
Runs on the CLI's main thread.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import signal
import sys
import time
from datetime import UTC, datetime
from typing import Any

from client.async_client import AsyncClient
from client.cli.common import (
    EXIT_OK,
    UsageError,
    add_client_options,
    add_json_option,
    json_bytes_fields,
    make_client,
    non_negative_int,
    positive_int,
    text_of,
)
from client.consumer import Start
from client.errors import NotFound
from client.models import Record

_RELATIVE = re.compile(r"^-(\d+(?:\.\d+)?)(ms|s|m|h|d)$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_COMMIT_INTERVAL_S = 1.0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    consume = commands.add_parser(
        "consume",
        help="print records of a log",
        description="Print the records of LOG (all tablets unless --tablet), one per line.",
    )
    consume.add_argument("log", metavar="LOG")
    consume.add_argument(
        "--tablet",
        type=non_negative_int,
        metavar="N",
        help="read only tablet N (default: every tablet)",
    )
    consume.add_argument(
        "--from",
        dest="start",
        default="earliest",
        metavar="WHERE",
        help="earliest (default), latest, an OFFSET, a time (ISO 8601, e.g. "
        "2024-05-01T12:00:00Z, or milliseconds as 1714564800000ms) or a relative "
        "time such as -10m",
    )
    consume.add_argument(
        "-f", "--follow", action="store_true", help="keep waiting for new records until Ctrl-C"
    )
    consume.add_argument("--max", type=positive_int, metavar="N", help="stop after N records")
    consume.add_argument(
        "--group", metavar="G", help="resume from and commit to consumer group G's offsets"
    )
    consume.add_argument(
        "--wait-ms",
        type=non_negative_int,
        default=1000,
        metavar="MS",
        help="long-poll time of each fetch when following (default 1000)",
    )
    consume.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="prefix each value with tablet, offset, time and key",
    )
    add_client_options(consume, top_level=False)
    add_json_option(consume)
    consume.set_defaults(handler=run_consume)


def parse_from(text: str, now_ms: int | None = None) -> Start:
    """``--from`` → a consumer start; raises UsageError for anything unrecognised."""
    if text in ("earliest", "latest"):
        return "earliest" if text == "earliest" else "latest"
    if text.isdigit():
        return int(text)
    if text.endswith("ms") and text[:-2].isdigit():
        return {"timestamp": int(text[:-2])}
    relative = _RELATIVE.match(text)
    if relative:
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        return {"timestamp": now - int(float(relative[1]) * _UNIT_MS[relative[2]])}
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"--from {text!r} is not earliest, latest, an offset, a time or a relative time"
        ) from None
    if moment.tzinfo is None:
        moment = moment.astimezone()  # a time without zone means local time
    return {"timestamp": int(moment.astimezone(UTC).timestamp() * 1000)}


def format_record(tablet: int, record: Record, *, as_json: bool, verbose: bool) -> str:
    """One output line for ``record`` (without the newline)."""
    if as_json:
        out: dict[str, Any] = {
            "tablet": tablet,
            "offset": record.offset,
            "timestamp": record.timestamp,
        }
        out.update(json_bytes_fields("key", record.key))
        out.update(json_bytes_fields("value", record.value))
        return json.dumps(out, separators=(",", ":"))
    value = text_of(record.value) or ""
    if not verbose:
        return value
    when = datetime.fromtimestamp(record.timestamp / 1000, UTC).isoformat(timespec="milliseconds")
    key = text_of(record.key)
    key_part = f" key={key}" if key is not None else ""
    return f"{tablet}:{record.offset} {when.replace('+00:00', 'Z')}{key_part} {value}"


class _Session:
    """State shared by the per-tablet readers and the printer. Loop thread only."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.queue: asyncio.Queue[tuple[int, Record] | None] = asyncio.Queue(maxsize=10_000)
        self.positions: dict[int, int] = {}
        self.committed: dict[int, int] = {}
        self.printed = 0


async def run_consume(args: argparse.Namespace) -> int:
    start = parse_from(args.start)
    session = _Session(args)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        async with make_client(args) as client:
            await _consume(client, session, start, stop)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
    return EXIT_OK


async def _consume(
    client: AsyncClient, session: _Session, start: Start, stop: asyncio.Event
) -> None:
    args = session.args
    description = await client.describe_log(args.log)
    if args.tablet is not None and args.tablet >= description.tablet_count:
        raise NotFound(
            f"log {args.log!r} has tablets 0..{description.tablet_count - 1}, not {args.tablet}"
        )
    tablets = [args.tablet] if args.tablet is not None else [t.tablet for t in description.tablets]
    starts: dict[int, Start] = dict.fromkeys(tablets, start)
    if args.group:
        for (_log, tablet), offset in (await client.committed(args.group, args.log)).items():
            if tablet in starts:
                starts[tablet] = offset
    readers = [
        asyncio.create_task(_read_tablet(client, session, tablet, starts[tablet]))
        for tablet in tablets
    ]
    printer = asyncio.create_task(_print_records(session, len(readers)))
    committer = asyncio.create_task(_commit_periodically(client, session)) if args.group else None
    stopper = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait(
            [printer, stopper, *readers], return_when=asyncio.FIRST_COMPLETED
        )
        while not (printer in done or stopper in done):
            for task in done:
                task.result()  # a reader failed: raise its error
            done, _ = await asyncio.wait(
                [printer, stopper, *[r for r in readers if not r.done()]],
                return_when=asyncio.FIRST_COMPLETED,
            )
        if printer in done:
            printer.result()
    finally:
        for task in [*readers, printer, stopper, *([committer] if committer else [])]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        sys.stdout.flush()
        if args.group:
            await _commit(client, session)


async def _read_tablet(client: AsyncClient, session: _Session, tablet: int, start: Start) -> None:
    args = session.args
    consumer = client.consume(
        args.log,
        tablet,
        start,
        wait_ms=args.wait_ms,
        stop_at_end=not args.follow,
        retry_timeout_s=None if args.follow else max(client.timeout_s, 5.0),
    )
    async for record in consumer:
        await session.queue.put((tablet, record))
    await session.queue.put(None)


async def _print_records(session: _Session, readers: int) -> None:
    args = session.args
    finished = 0
    while finished < readers:
        item = await session.queue.get()
        if item is None:
            finished += 1
            continue
        tablet, record = item
        line = format_record(tablet, record, as_json=args.json, verbose=args.verbose)
        sys.stdout.write(line + "\n")
        session.positions[tablet] = record.offset + 1
        session.printed += 1
        if args.max is not None and session.printed >= args.max:
            return
        if session.queue.empty():
            sys.stdout.flush()


async def _commit_periodically(client: AsyncClient, session: _Session) -> None:
    while True:
        await asyncio.sleep(_COMMIT_INTERVAL_S)
        await _commit(client, session)


async def _commit(client: AsyncClient, session: _Session) -> None:
    changed = {t: o for t, o in session.positions.items() if session.committed.get(t) != o}
    if not changed:
        return
    await client.commit(session.args.group, {(session.args.log, t): o for t, o in changed.items()})
    session.committed.update(changed)
