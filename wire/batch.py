"""Record batches: the unit of append, replication, storage and reads.

A produce request carries one or more batches, the leader appends each with one write, followers
copy the same bytes verbatim and consumers receive the same bytes. Nothing on that path decodes
records one by one; only the fixed header is parsed.

Bytes of one batch (all integers big-endian, signed unless noted)::

    pos size field              meaning
    0   8    base_offset        offset of the first record; stamped by the leader
    8   4    batch_length       bytes after this field: the batch is 12 + batch_length bytes
    12  1    magic              format version, currently 1
    13  4    leader_epoch       epoch of the leader that appended it; stamped by the leader
    17  8    append_time_ms     ms since the epoch when the leader appended it; stamped
    25  4    header_crc         CRC-32C (unsigned) of bytes [0, 25): the leader-stamped fields
    29  4    crc                CRC-32C (unsigned) of bytes [33, end): everything the producer wrote
    33  2    attributes         bits 0-2 compression (0 = none, the only one so far); the rest 0
    35  4    last_offset_delta  offset of the last record minus base_offset
    39  8    first_timestamp    producer's create time of the first record (ms)
    47  8    max_timestamp      largest producer create time in the batch (ms)
    55  8    producer_id        idempotent producer id, -1 if none
    63  2    producer_epoch     -1 if none
    65  4    base_sequence      sequence number of the first record for this producer and tablet,
                                -1 if none
    69  4    record_count       number of records that follow
    73  ...  records

The split between two checksums is what lets the leader stamp ``base_offset``, ``leader_epoch``
and ``append_time_ms`` without hashing the payload again: it rewrites the 25-byte prefix and its
own 4-byte checksum, while ``crc`` (computed once by whoever built the batch) still covers every
byte the producer wrote. Every byte of a batch is under one of the two checksums (Kafka's v2
format leaves the base offset unchecked; this one does not).

Records follow the header, encoded as ``wire.records`` describes.

The timestamp users see is the batch's ``append_time_ms`` (the log's append time); the producer's
create time is kept alongside.

This module is pure (no I/O) and thread-safe.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import crc32c as _crc32c

from wire.errors import CorruptBatch
from wire.records import (
    Record,
    RecordInput,
    decode_records,
    encode_records,
    read_varint,
    write_varint,
)

__all__ = [
    "BatchHeader",
    "Record",
    "RecordInput",
    "build_batch",
    "crc32c",
    "iter_headers",
    "iter_records",
    "parse_header",
    "read_varint",
    "stamp_prefix",
    "stamped_prefix",
    "validate_batch",
    "write_varint",
]

MAGIC = 1
HEADER = struct.Struct(">qibiqIIhiqqqhii")
HEADER_SIZE = HEADER.size  # 73
assert HEADER_SIZE == 73

PREFIX = struct.Struct(">qibiq")  # base_offset, batch_length, magic, leader_epoch, append_time_ms
PREFIX_SIZE = PREFIX.size  # 25: the bytes covered by header_crc
LENGTH_OVERHEAD = 12  # base_offset + batch_length: bytes not counted by batch_length
CRC_POS = 29
BODY_POS = 33  # crc covers [BODY_POS, end)
BODY = struct.Struct(">hiqqqhii")  # attributes .. record_count, at BODY_POS

ATTR_COMPRESSION_MASK = 0x07

NO_PRODUCER_ID = -1
NO_SEQUENCE = -1

#: Largest batch accepted anywhere (producer, leader, follower): bounds memory per request.
MAX_BATCH_BYTES = 16 * 1024 * 1024


def crc32c(data: bytes | bytearray | memoryview, value: int = 0) -> int:
    """CRC-32C (Castagnoli) of ``data``, continuing from ``value``; C code, hardware-accelerated."""
    return int(_crc32c.crc32c(data, value))


@dataclass(frozen=True, slots=True)
class BatchHeader:
    """The fixed header of one batch, as parsed by :func:`parse_header`.

    ``end_offset`` is exclusive: the offset after the batch's last record.
    """

    base_offset: int
    batch_length: int
    magic: int
    leader_epoch: int
    append_time_ms: int
    header_crc: int
    crc: int
    attributes: int
    last_offset_delta: int
    first_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    record_count: int

    @property
    def size(self) -> int:
        """Total bytes of the batch, header included."""
        return LENGTH_OVERHEAD + self.batch_length

    @property
    def last_offset(self) -> int:
        """Offset of the last record (inclusive)."""
        return self.base_offset + self.last_offset_delta

    @property
    def end_offset(self) -> int:
        """Offset after the last record (exclusive end)."""
        return self.base_offset + self.last_offset_delta + 1

    @property
    def last_sequence(self) -> int:
        """Sequence number of the last record, or -1 when the batch carries no sequence."""
        if self.base_sequence == NO_SEQUENCE:
            return NO_SEQUENCE
        return self.base_sequence + self.last_offset_delta


# ---------------------------------------------------------------------------------------------
# encoding


def build_batch(
    records: Sequence[RecordInput],
    *,
    create_time_ms: int = 0,
    producer_id: int = NO_PRODUCER_ID,
    producer_epoch: int = -1,
    base_sequence: int = NO_SEQUENCE,
    headers: Sequence[Sequence[tuple[str, bytes | None]]] | None = None,
    base_offset: int = 0,
    leader_epoch: int = -1,
    append_time_ms: int = 0,
) -> bytes:
    """Encode one batch as a producer would (base offset 0 unless given, epoch -1).

    The leader later stamps base offset, epoch and append time; ``crc`` stays valid.
    Raises ValueError for an empty record list.
    """
    if not records:
        raise ValueError("a batch holds at least one record")
    body, count = encode_records(records, headers=headers)
    head = bytearray(HEADER_SIZE)
    BODY.pack_into(
        head,
        BODY_POS,
        0,
        count - 1,
        create_time_ms,
        create_time_ms,
        producer_id,
        producer_epoch,
        base_sequence,
        count,
    )
    crc = crc32c(body, crc32c(memoryview(head)[BODY_POS:]))
    struct.pack_into(">I", head, CRC_POS, crc)
    batch_length = HEADER_SIZE + len(body) - LENGTH_OVERHEAD
    stamp_prefix(head, base_offset, batch_length, leader_epoch, append_time_ms)
    return bytes(head + body)


def stamp_prefix(
    buf: bytearray | memoryview,
    base_offset: int,
    batch_length: int,
    leader_epoch: int,
    append_time_ms: int,
) -> None:
    """Write the leader-stamped prefix and its checksum into the first 29 bytes of ``buf``."""
    PREFIX.pack_into(buf, 0, base_offset, batch_length, MAGIC, leader_epoch, append_time_ms)
    struct.pack_into(">I", buf, PREFIX_SIZE, crc32c(memoryview(buf)[:PREFIX_SIZE]))


def stamped_prefix(
    base_offset: int, batch_length: int, leader_epoch: int, append_time_ms: int
) -> bytes:
    """The 29 leader-stamped bytes (prefix + header_crc) that replace a batch's first 29 bytes."""
    buf = bytearray(PREFIX_SIZE + 4)
    stamp_prefix(buf, base_offset, batch_length, leader_epoch, append_time_ms)
    return bytes(buf)


# ---------------------------------------------------------------------------------------------
# parsing and validation


def parse_header(buf: bytes | bytearray | memoryview, pos: int = 0) -> BatchHeader:
    """Parse the header at ``pos`` without checking CRCs.

    Raises CorruptBatch if fewer than HEADER_SIZE bytes remain, the magic is unknown or the
    length fields are impossible.
    """
    if len(buf) - pos < HEADER_SIZE:
        raise CorruptBatch("truncated batch header")
    h = BatchHeader(*HEADER.unpack_from(buf, pos))
    if h.magic != MAGIC:
        raise CorruptBatch(f"unknown batch format version {h.magic}")
    if h.size < HEADER_SIZE or h.size > MAX_BATCH_BYTES:
        raise CorruptBatch(f"impossible batch length {h.batch_length}")
    if h.record_count <= 0 or h.last_offset_delta != h.record_count - 1:
        raise CorruptBatch("record count does not match last offset delta")
    return h


def validate_batch(buf: bytes | bytearray | memoryview, pos: int = 0) -> BatchHeader:
    """Parse and verify both checksums of the batch at ``pos``; return its header.

    Raises CorruptBatch if the batch is truncated (fewer bytes than its length says) or a CRC
    does not match.
    """
    h = parse_header(buf, pos)
    if len(buf) - pos < h.size:
        raise CorruptBatch("truncated batch: fewer bytes than its length")
    view = memoryview(buf)
    if crc32c(view[pos : pos + PREFIX_SIZE]) != h.header_crc:
        raise CorruptBatch(f"header checksum mismatch in batch at offset {h.base_offset}")
    if crc32c(view[pos + BODY_POS : pos + h.size]) != h.crc:
        raise CorruptBatch(f"checksum mismatch in batch at offset {h.base_offset}")
    return h


def iter_headers(
    buf: bytes | bytearray | memoryview, *, verify: bool = True
) -> Iterator[tuple[int, BatchHeader]]:
    """Yield (position, header) of each batch in ``buf``, which must hold whole batches.

    With ``verify`` both checksums are checked. Raises CorruptBatch on the first bad batch or on
    trailing bytes that are not a whole batch.
    """
    pos = 0
    end = len(buf)
    while pos < end:
        h = validate_batch(buf, pos) if verify else parse_header(buf, pos)
        if not verify and end - pos < h.size:
            raise CorruptBatch("truncated batch: fewer bytes than its length")
        yield pos, h
        pos += h.size


def iter_records(buf: bytes | bytearray | memoryview, *, verify: bool = True) -> Iterator[Record]:
    """Decode every record of the whole batches in ``buf`` (for consumers, tests and digests).

    Raises CorruptBatch on a bad checksum (with ``verify``) or a malformed record.
    """
    view = memoryview(buf)
    for pos, h in iter_headers(view, verify=verify):
        body = bytes(view[pos + HEADER_SIZE : pos + h.size])
        yield from decode_records(
            body, h.base_offset, h.append_time_ms, h.first_timestamp, h.record_count
        )
