"""Records inside a batch: their bytes, encoding and decoding (see ``wire.batch`` for the
batch around them). Pure and thread-safe.

Each record (Kafka v2 style; ``varint`` is a zig-zag LEB128 integer)::

    varint  length           bytes of the record after this field
    int8    attributes       0
    varint  timestamp_delta  create time minus the batch's first_timestamp
    varint  offset_delta     offset minus the batch's base_offset
    varint  key_length       -1 for no key
    bytes   key
    varint  value_length     -1 for no value
    bytes   value
    varint  header_count
            header: varint key_length, utf-8 key, varint value_length (-1 = none), value
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

from wire.errors import CorruptBatch


class Record(NamedTuple):
    """One decoded record. ``timestamp`` is the log's append time (ms); ``create_time`` the
    producer's. A NamedTuple: consumers build millions of these, and tuples are cheapest."""

    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()
    create_time: int = 0


# ---------------------------------------------------------------------------------------------
# varints


def _zigzag(n: int) -> int:
    return (n << 1) ^ (n >> 63)


def write_varint(out: bytearray, n: int) -> None:
    """Append the zig-zag varint of ``n`` (a signed 64-bit integer) to ``out``."""
    v = _zigzag(n) & 0xFFFFFFFFFFFFFFFF
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)


def read_varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    """Decode the zig-zag varint at ``pos``; return (value, position after it).

    Raises CorruptBatch if the buffer ends inside the varint or it is longer than 10 bytes.
    """
    shift = 0
    result = 0
    end = len(buf)
    while True:
        if pos >= end or shift > 63:
            raise CorruptBatch("truncated or overlong varint in record")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            break
        shift += 7
    return (result >> 1) ^ -(result & 1), pos


# ---------------------------------------------------------------------------------------------
# encoding


RecordInput = tuple[bytes | None, bytes | None]
"""(key, value) of a record to encode; either may be None."""

_TABLE_SIZE = 1 << 13
# the one-byte zig-zag varints decoded: byte -> value
_ZIGZAG_BYTE = [(b >> 1) ^ -(b & 1) for b in range(0x80)]
_new_tuple = tuple.__new__


def _varint_bytes(n: int) -> bytes:
    out = bytearray()
    write_varint(out, n)
    return bytes(out)


@functools.cache
def _encoding_tables() -> tuple[list[bytes], list[bytes], list[bytes], list[bytes]]:
    """Pieces of records for 0 <= n < 8192 (built on first use, ~1.5 MB): the varint of n;
    attributes 0, timestamp delta 0 and offset delta n; no key then a value length n; and a
    header count 0 (the end of the previous record) then a record length n."""
    varints = [_varint_bytes(n) for n in range(_TABLE_SIZE)]
    return (
        varints,
        [b"\x00\x00" + v for v in varints],
        [b"\x01" + v for v in varints],
        [b"\x00" + v for v in varints],
    )


def encode_records(
    records: Sequence[RecordInput],
    *,
    headers: Sequence[Sequence[tuple[str, bytes | None]]] | None = None,
) -> tuple[bytearray, int]:
    """Encode records with timestamp delta 0 (they share the batch's create time).

    Returns (bytes, record count). The hot loop of every producer: records without headers are
    a few precomputed pieces each (see ``_encoding_tables``) joined once at the end.
    """
    if headers is not None:
        return _encode_with_headers(records, headers)
    varints, deltas, no_key, end_then = _encoding_tables()
    size, varint = _TABLE_SIZE, _varint_bytes
    parts: list[bytes] = []
    extend = parts.extend
    for i, (key, value) in enumerate(records):
        delta = deltas[i] if i < size else b"\x00\x00" + varint(i)
        data = b"" if value is None else value
        n = len(data)
        if key is None:
            # no key (zig-zag -1), then the value's length (-1 again for no value)
            head = b"\x01\x01" if value is None else no_key[n] if n < size else b"\x01" + varint(n)
            n += len(delta) + len(head) + 1
            extend((end_then[n] if n < size else b"\x00" + varint(n), delta, head, data))
        else:
            k = len(key)
            key_len = varints[k] if k < size else varint(k)
            value_len = b"\x01" if value is None else varints[n] if n < size else varint(n)
            n += len(delta) + len(key_len) + k + len(value_len) + 1
            extend(
                (
                    end_then[n] if n < size else b"\x00" + varint(n),
                    delta,
                    key_len,
                    key,
                    value_len,
                    data,
                )
            )
    parts.append(b"\x00")  # the last record's header count
    # every record's length came after a 0 that ends the record before it: drop the first
    return bytearray(memoryview(b"".join(parts))[1:]), len(records)


def _encode_with_headers(
    records: Sequence[RecordInput], headers: Sequence[Sequence[tuple[str, bytes | None]]]
) -> tuple[bytearray, int]:
    """The general encoder: any record may carry headers."""
    out = bytearray()
    rec = bytearray()
    for i, (key, value) in enumerate(records):
        rec.clear()
        rec.append(0)  # attributes
        rec.append(0)  # timestamp delta 0 (zig-zag 0 is one byte 0)
        write_varint(rec, i)
        if key is None:
            rec.append(1)  # zig-zag(-1)
        else:
            write_varint(rec, len(key))
            rec += key
        if value is None:
            rec.append(1)
        else:
            write_varint(rec, len(value))
            rec += value
        hdrs = headers[i]
        write_varint(rec, len(hdrs))
        for hkey, hval in hdrs:
            hk = hkey.encode()
            write_varint(rec, len(hk))
            rec += hk
            if hval is None:
                rec.append(1)
            else:
                write_varint(rec, len(hval))
                rec += hval
        write_varint(out, len(rec))
        out += rec
    return out, len(records)


def decode_records(  # noqa: PLR0915 - the hot loop of every consumer, inlined on purpose
    body: bytes, base_offset: int, append_time_ms: int, first_timestamp: int, count: int
) -> list[Record]:
    """Decode one batch's records. The hot loop of every consumer: one- and two-byte varints
    (lengths below 8192, small deltas) are decoded inline, anything longer takes the general
    path; records are built with ``tuple.__new__`` (a NamedTuple's own constructor is Python)."""
    records: list[Record] = []
    append = records.append
    base, append_time, first_ts = base_offset, append_time_ms, first_timestamp
    zz, new, record, no_headers = _ZIGZAG_BYTE, _new_tuple, Record, ()
    size = len(body)
    pos = 0
    try:
        for _ in range(count):
            b = body[pos]
            if b < 0x80:
                length = zz[b]
                pos += 1
            elif body[pos + 1] < 0x80:  # two-byte varint: lengths up to 8191
                b = (b & 0x7F) | (body[pos + 1] << 7)
                length, pos = (b >> 1) ^ -(b & 1), pos + 2
            else:
                length, pos = read_varint(body, pos)
            end = pos + length
            if length < 0 or end > size:
                raise CorruptBatch("record length past the end of its batch")
            p = pos + 1  # attributes
            b = body[p]
            if b < 0x80:
                ts_delta = zz[b]
                p += 1
            else:
                ts_delta, p = read_varint(body, p)
            b = body[p]
            if b < 0x80:
                off_delta = zz[b]
                p += 1
            elif body[p + 1] < 0x80:
                b = (b & 0x7F) | (body[p + 1] << 7)
                off_delta, p = (b >> 1) ^ -(b & 1), p + 2
            else:
                off_delta, p = read_varint(body, p)
            b = body[p]
            if b == 1:  # zig-zag(-1): no key, the common case
                key = None
                p += 1
            else:
                if b < 0x80:
                    n = zz[b]
                    p += 1
                else:
                    n, p = read_varint(body, p)
                if n < 0:
                    key = None
                else:
                    key = body[p : p + n]
                    p += n
            b = body[p]
            if b < 0x80:
                n = zz[b]
                p += 1
            elif body[p + 1] < 0x80:
                b = (b & 0x7F) | (body[p + 1] << 7)
                n, p = (b >> 1) ^ -(b & 1), p + 2
            else:
                n, p = read_varint(body, p)
            if n < 0:
                value = None
            else:
                value = body[p : p + n]
                p += n
            if body[p] == 0:  # no headers: the common case
                headers: tuple[tuple[str, bytes | None], ...] = no_headers
                p += 1
            else:
                headers, p = _read_headers(body, p, end)
            if p != end:
                raise CorruptBatch("record length does not match its fields")
            append(
                new(
                    record,
                    (base + off_delta, append_time, key, value, headers, first_ts + ts_delta),
                )
            )
            pos = end
    except IndexError:
        raise CorruptBatch("record fields run past the end of their batch") from None
    return records


def _read_headers(
    body: bytes, pos: int, end: int
) -> tuple[tuple[tuple[str, bytes | None], ...], int]:
    count, pos = read_varint(body, pos)
    headers: list[tuple[str, bytes | None]] = []
    for _ in range(count):
        hk, pos = _read_bytes(body, pos, end)
        hv, pos = _read_bytes(body, pos, end)
        headers.append(((hk or b"").decode("utf-8", "replace"), hv))
    return tuple(headers), pos


def _read_bytes(body: bytes, pos: int, end: int) -> tuple[bytes | None, int]:
    n, pos = read_varint(body, pos)
    if n < 0:
        return None, pos
    if pos + n > end:
        raise CorruptBatch("field length past the end of its record")
    return bytes(body[pos : pos + n]), pos + n
