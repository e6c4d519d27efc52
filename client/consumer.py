"""Consumer of one tablet: an async iterator of records in offset order.

Reads use the binary consume endpoint (``GET .../tablets/{i}/batches``) and go to the tablet
leader when the metadata names one (any node would forward, but asking the leader saves a hop);
on connection errors, ``no_leader`` and other retriable answers the consumer refreshes the
metadata and retries with backoff, so it follows leader changes without the caller noticing.
Each fetch long-polls up to ``wait_ms``. The first batch of an answer may start before the
requested offset (it is the batch that contains it), so records below the position are skipped.

Fetching ahead (``prefetch``, on by default): when an answer leaves the consumer behind the high
watermark, the request for the next position is sent before this answer is decoded, so the
node reads the next records while the caller decodes and works through these (``seek`` and
``close`` drop it). Decoding is batch by batch: checksums are checked, records are built straight
from the batch bytes, and only a batch that starts before the position is filtered.

Starting points: ``"earliest"`` (the tablet's start offset), ``"latest"`` (its high watermark: only
records produced from now on), an ``int`` offset, or ``{"timestamp": ms}`` (the first record
appended at or after that time).

An offset outside the tablet's range raises :class:`~client.errors.OffsetOutOfRange`, or, with
``reset="earliest"``/``"latest"``, moves the position to that end of the range.

Confined to the event loop of its client; not thread-safe (see ``client.sync`` for the blocking
iterator).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Literal

from client.errors import ClientError, NotFound, OffsetOutOfRange, ProtocolError
from client.metadata import log_path
from client.models import Record
from client.transport import Response
from wire.batch import HEADER_SIZE, BatchHeader, iter_headers
from wire.errors import CorruptBatch
from wire.records import decode_records

if TYPE_CHECKING:
    from client.async_client import AsyncClient

Start = Literal["earliest", "latest"] | int | Mapping[str, int]
Reset = Literal["earliest", "latest"] | None

HIGH_WATERMARK_HEADER = "X-Tabletlog-High-Watermark"
START_OFFSET_HEADER = "X-Tabletlog-Start-Offset"
NEXT_OFFSET_HEADER = "X-Tabletlog-Next-Offset"


def parse_start(start: object) -> Start:
    """Validate a start position; raises ValueError for anything but the four forms."""
    if start in ("earliest", "latest"):
        return "earliest" if start == "earliest" else "latest"
    if isinstance(start, int) and not isinstance(start, bool) and start >= 0:
        return start
    if isinstance(start, Mapping) and set(start) == {"timestamp"}:
        ts = start["timestamp"]
        if isinstance(ts, int) and not isinstance(ts, bool):
            return {"timestamp": ts}
    raise ValueError(
        f"a start is 'earliest', 'latest', an offset ≥ 0 or {{'timestamp': ms}}, not {start!r}"
    )


class Consumer:
    """Reads one tablet of one log from a start position; see the module docstring.

    ``position`` is the offset of the next record the iterator yields; ``high_watermark`` the
    last one a node reported. With ``stop_at_end`` the iteration ends when the position reaches
    the high watermark (what ``tabletlog consume`` without ``--follow`` does). Not thread-safe.
    """

    def __init__(
        self,
        client: AsyncClient,
        log: str,
        tablet: int,
        start: Start = "earliest",
        *,
        wait_ms: int = 1000,
        max_bytes: int = 1024 * 1024,
        reset: Reset = None,
        stop_at_end: bool = False,
        retry_backoff_ms: float = 100,
        retry_backoff_max_ms: float = 2000,
        retry_timeout_s: float | None = None,
        prefetch: bool = True,
    ) -> None:
        if tablet < 0:
            raise ValueError("a tablet index cannot be negative")
        self._client = client
        self._log = log
        self._tablet = tablet
        self._start = parse_start(start)
        self._wait_ms = max(0, wait_ms)
        self._max_bytes = max_bytes
        self._reset: Reset = reset
        self._stop_at_end = stop_at_end
        self._backoff_s = retry_backoff_ms / 1000
        self._backoff_max_s = retry_backoff_max_ms / 1000
        self._retry_timeout_s = retry_timeout_s
        self._position: int | None = start if isinstance(start, int) else None
        self.high_watermark: int | None = None
        self.start_offset: int | None = None
        self._buffer: list[Record] = []  # the last poll's records; __anext__ yields from _next
        self._next = 0
        self._prefetching = prefetch
        self._prefetch: tuple[int, asyncio.Task[Response]] | None = None
        self._at_end = False

    @property
    def log(self) -> str:
        return self._log

    @property
    def tablet(self) -> int:
        return self._tablet

    @property
    def position(self) -> int | None:
        """Offset of the next record to yield (None until the start has been resolved)."""
        return self._position

    @property
    def stop_at_end(self) -> bool:
        return self._stop_at_end

    @property
    def at_end(self) -> bool:
        """True when the last fetch reached the high watermark (nothing more to read yet)."""
        return self._at_end

    async def seek(self, start: Start) -> None:
        """Move to a new start position; the next record comes from there."""
        self._start = parse_start(start)
        self._position = start if isinstance(start, int) else None
        self._cancel_prefetch()
        self._buffer = []
        self._next = 0
        self._at_end = False

    def __aiter__(self) -> AsyncIterator[Record]:
        return self

    async def __anext__(self) -> Record:
        buffer, index = self._buffer, self._next
        if index < len(buffer):  # the common case: no fetch, no copy
            self._next = index + 1
            return buffer[index]
        while True:
            if self._stop_at_end and self._at_end:
                raise StopAsyncIteration
            buffer = await self.poll()
            if buffer:
                self._buffer, self._next = buffer, 1
                return buffer[0]

    async def poll(self) -> list[Record]:
        """One fetch: the next records from ``position`` (may be empty after the long-poll).

        Advances ``position`` past the records returned. Retries retriable errors (following
        leader changes) until ``retry_timeout_s`` if set, else indefinitely; raises the others.
        """
        if self._position is None:
            self._position = await self._resolve_start()
        attempt = 0
        started = asyncio.get_running_loop().time()
        while True:
            try:
                return await self._fetch(self._position)
            except OffsetOutOfRange as exc:
                if self._reset is None:
                    raise
                self._position = await self._reset_position(exc)
            except ClientError as exc:
                if not exc.retriable:
                    raise
                elapsed = asyncio.get_running_loop().time() - started
                if self._retry_timeout_s is not None and elapsed >= self._retry_timeout_s:
                    raise
                if exc.refresh_metadata:
                    await self._refresh_quietly()
                delay = min(self._backoff_s * 2.0**attempt, self._backoff_max_s)
                attempt += 1
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))

    async def _fetch(self, position: int) -> list[Record]:
        prefetch, self._prefetch = self._prefetch, None
        if prefetch is not None and prefetch[0] == position:
            response = await prefetch[1]
        else:
            if prefetch is not None:
                prefetch[1].cancel()
            response = await self._request(position)
        response.raise_for_error()
        batches = self._batches(response)
        end = batches[-1][1].end_offset if batches else position
        hw = response.int_header(HIGH_WATERMARK_HEADER)
        if self._prefetching and position < end and hw is not None and end < hw:
            # the next fetch starts now: the node reads it while we decode this one
            self._start_prefetch(end)
            await asyncio.sleep(0)  # the prefetch sends its request
        try:
            records = self._decode(response, batches, position)
        except ProtocolError:
            self._cancel_prefetch()
            raise
        self._update_marks(response, records)
        return records

    async def _request(self, position: int) -> Response:
        wait_ms = 0 if self._stop_at_end else self._wait_ms
        params: dict[str, str | int] = {
            "offset": position,
            "max_bytes": self._max_bytes,
            "wait_ms": wait_ms,
        }
        metadata = self._client.metadata
        return await metadata.request_any(
            "GET",
            log_path(self._log, "tablets", self._tablet, "batches"),
            params=params,
            timeout_s=self._client.timeout_s + wait_ms / 1000,
            first=metadata.leader_address(self._log, self._tablet),
        )

    def _start_prefetch(self, position: int) -> None:
        """Fetch from ``position`` ahead of time (only behind the high watermark, where the
        answer comes at once, without a long poll)."""
        task = asyncio.get_running_loop().create_task(self._request(position))
        task.add_done_callback(_retrieve)
        self._prefetch = (position, task)

    def _cancel_prefetch(self) -> None:
        if self._prefetch is not None:
            self._prefetch[1].cancel()
            self._prefetch = None

    async def close(self) -> None:
        """Drop a fetch started ahead of time (if any); the consumer stays usable."""
        prefetch, self._prefetch = self._prefetch, None
        if prefetch is not None:
            prefetch[1].cancel()
            with contextlib.suppress(asyncio.CancelledError, ClientError):
                await prefetch[1]

    def _batches(self, response: Response) -> list[tuple[int, BatchHeader]]:
        """(position, header) of each batch of the answer, checksums checked."""
        try:
            return list(iter_headers(memoryview(response.body)))
        except CorruptBatch as exc:
            raise self._corrupt(response, exc) from exc

    def _decode(
        self, response: Response, batches: list[tuple[int, BatchHeader]], position: int
    ) -> list[Record]:
        """The records at or after ``position``, batch by batch: only a batch that starts
        before the position is filtered record by record."""
        body = response.body
        decoded: list[Record] = []
        try:
            for pos, h in batches:
                if h.end_offset <= position:
                    continue
                records = decode_records(
                    body[pos + HEADER_SIZE : pos + h.size],
                    h.base_offset,
                    h.append_time_ms,
                    h.first_timestamp,
                    h.record_count,
                )
                if h.base_offset < position:
                    records = [r for r in records if r.offset >= position]
                if decoded:
                    decoded += records
                else:
                    decoded = records
        except CorruptBatch as exc:
            raise self._corrupt(response, exc) from exc
        return decoded

    def _corrupt(self, response: Response, exc: CorruptBatch) -> ProtocolError:
        return ProtocolError(
            f"node {response.address} sent a corrupt batch for tablet {self._tablet}: {exc}",
            address=response.address,
        )

    def _update_marks(self, response: Response, records: list[Record]) -> None:
        assert self._position is not None
        hw = response.int_header(HIGH_WATERMARK_HEADER)
        if hw is not None:
            self.high_watermark = hw
        start = response.int_header(START_OFFSET_HEADER)
        if start is not None:
            self.start_offset = start
        if records:
            self._position = records[-1].offset + 1
        else:
            next_offset = response.int_header(NEXT_OFFSET_HEADER)
            # only ever move forward: a node's hint must not make us re-read or go back
            if next_offset is not None and next_offset > self._position:
                self._position = next_offset
        reached_end = hw is not None and self._position >= hw
        self._at_end = reached_end or (hw is None and not records)

    async def _resolve_start(self) -> int:
        start = self._start
        if isinstance(start, int):
            return start
        if isinstance(start, Mapping):
            return await self._client.offset_for_timestamp(
                self._log, self._tablet, start["timestamp"]
            )
        description = await self._client.metadata.log(self._log, refresh=True)
        try:
            info = description.tablet(self._tablet)
        except IndexError:
            raise NotFound(f"log {self._log!r} has no tablet {self._tablet}") from None
        return info.start_offset if start == "earliest" else info.high_watermark

    async def _reset_position(self, exc: OffsetOutOfRange) -> int:
        if self._reset == "earliest" and exc.start_offset is not None:
            return exc.start_offset
        if self._reset == "latest" and exc.end_offset is not None:
            return exc.end_offset
        self._start = self._reset or "earliest"
        return await self._resolve_start()

    async def _refresh_quietly(self) -> None:
        try:
            await self._client.metadata.log(self._log, refresh=True)
        except ClientError as exc:
            if not exc.retriable:
                raise


def _retrieve(task: asyncio.Task[Response]) -> None:
    """A prefetch nobody waits for any more must not log "exception never retrieved"."""
    if not task.cancelled():
        task.exception()
