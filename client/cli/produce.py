"""``tabletlog produce LOG``: one record per stdin line, through the batching producer.

stdin is read in chunks on a worker thread (``read1``), so a pipe of a million lines is read
quickly while an interactive terminal still sends each line as soon as it is typed (the producer's
linger timer keeps running on the loop meanwhile). Lines lose their trailing newline; with
``--key-sep`` each line is split at the first separator into key and value (a line without it is
keyless). Stops at the first record that fails and exits 1. Runs on the CLI's main thread.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import sys
import threading
from collections import deque
from collections.abc import AsyncIterator
from typing import BinaryIO

from client.accumulator import Delivery
from client.cli.common import (
    EXIT_OK,
    UsageError,
    add_client_options,
    add_json_option,
    exit_code_for,
    make_client,
    non_negative_int,
    positive_float,
    print_error,
    print_json_line,
)
from client.errors import ClientError

_CHUNK_BYTES = 256 * 1024


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    produce = commands.add_parser(
        "produce",
        help="append stdin lines to a log",
        description="Append each line of stdin as one record of LOG.",
    )
    produce.add_argument("log", metavar="LOG")
    produce.add_argument("--key", metavar="K", help="the key of every record")
    produce.add_argument(
        "--key-sep", metavar="SEP", help="split each line at the first SEP into key and value"
    )
    produce.add_argument(
        "--acks",
        choices=("all", "1", "0"),
        default="all",
        help="replicas that must have a record before it counts (default all)",
    )
    produce.add_argument(
        "--tablet",
        type=non_negative_int,
        metavar="N",
        help="send every record to tablet N (default: by key, else round robin)",
    )
    produce.add_argument(
        "--linger-ms",
        type=float,
        default=5.0,
        metavar="MS",
        help="how long a batch waits for more records (default 5)",
    )
    produce.add_argument(
        "--delivery-timeout",
        type=positive_float,
        default=30.0,
        metavar="SECONDS",
        help="give up on a record after retrying this long (default 30)",
    )
    produce.add_argument(
        "--no-idempotence",
        action="store_true",
        help="do not de-duplicate retried batches (not recommended)",
    )
    produce.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="print tablet and offset of each record, then a summary",
    )
    add_client_options(produce, top_level=False)
    add_json_option(produce)
    produce.set_defaults(handler=run_produce)


def split_line(line: bytes, key: bytes | None, key_sep: bytes | None) -> tuple[bytes | None, bytes]:
    """(key, value) of one input line (without its newline)."""
    if key_sep:
        head, sep, tail = line.partition(key_sep)
        if sep:
            return head, tail
        return key, line
    return key, line


async def read_lines(stream: BinaryIO) -> AsyncIterator[bytes]:
    """Lines of ``stream`` without their newline, read in chunks on a daemon thread.

    A daemon thread rather than ``asyncio.to_thread``: a read blocked on a terminal must not keep
    the process alive (or ``asyncio.run`` waiting) after the command has decided to stop.
    """
    loop = asyncio.get_running_loop()
    chunks: asyncio.Queue[bytes] = asyncio.Queue(maxsize=16)

    def reader() -> None:
        while True:
            chunk = _read_chunk(stream)
            try:
                asyncio.run_coroutine_threadsafe(chunks.put(chunk), loop).result()
            except (RuntimeError, concurrent.futures.CancelledError):
                return  # the loop is gone: the command finished
            if not chunk:
                return

    threading.Thread(target=reader, name="tabletlog-stdin", daemon=True).start()
    rest = b""
    while chunk := await chunks.get():
        rest += chunk
        *lines, rest = rest.split(b"\n")
        for line in lines:
            yield line.removesuffix(b"\r")
    if rest:
        yield rest.removesuffix(b"\r")


def _read_chunk(stream: BinaryIO) -> bytes:
    read1 = getattr(stream, "read1", None)
    return bytes(read1(_CHUNK_BYTES)) if read1 is not None else stream.read(_CHUNK_BYTES)


async def run_produce(args: argparse.Namespace) -> int:
    if args.key is not None and args.key_sep is not None:
        raise UsageError("give --key or --key-sep, not both")
    if args.key_sep == "":
        raise UsageError("--key-sep cannot be empty")
    key = args.key.encode() if args.key is not None else None
    key_sep = args.key_sep.encode() if args.key_sep is not None else None
    pending: deque[Delivery] = deque()
    produced = 0
    failure: BaseException | None = None
    async with make_client(args) as client:
        producer = client.producer(
            args.log,
            acks=args.acks,
            linger_ms=args.linger_ms,
            idempotent=not args.no_idempotence,
            delivery_timeout_s=args.delivery_timeout,
        )
        try:
            async for line in read_lines(sys.stdin.buffer):
                record_key, value = split_line(line, key, key_sep)
                pending.append(await producer.send(value, key=record_key, tablet=args.tablet))
                produced, failure = _report_done(pending, produced, args, wait=False)
                if failure is not None:
                    break
            await producer.flush()
            if failure is None:
                produced, failure = _report_done(pending, produced, args, wait=True)
        finally:
            await producer.close()
            for future in pending:  # retrieve every error: no "never retrieved" noise
                if future.done() and not future.cancelled():
                    future.exception()
    if failure is not None:
        message = failure.message if isinstance(failure, ClientError) else str(failure)
        print_error(f"record {produced + 1} was not written: {message}")
        return exit_code_for(failure)
    if args.verbose and not args.json:
        sys.stderr.write(f"produced {produced} records to {args.log}\n")
    return EXIT_OK


def _report_done(
    pending: deque[Delivery],
    produced: int,
    args: argparse.Namespace,
    *,
    wait: bool,
) -> tuple[int, BaseException | None]:
    """Print the settled records at the head of ``pending`` (input order); return the new
    count of produced records and the first failure, if any."""
    while pending and (wait or pending[0].done()):
        future = pending.popleft()
        exc = future.exception()
        if exc is not None:
            return produced, exc
        tablet, offset = future.result()
        produced += 1
        if args.json:
            print_json_line({"tablet": tablet, "offset": offset})
        elif args.verbose:
            sys.stdout.write(f"tablet {tablet} offset {offset}\n")
    return produced, None
