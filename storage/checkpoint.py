"""Small checkpoint files: atomic replacement, tolerant reading.

Bytes of a checkpoint file (UTF-8 text, ``\\n`` line ends)::

    tabletlog-checkpoint 1 <kind>      version line: format version 1 and what the file holds
    <value line>                       zero or more lines, meaning defined by the kind
    ...
    crc32c <8 hex digits>              CRC-32C of every byte before this line

A write goes to ``<name>.tmp``, is fsynced, renamed over ``<name>`` and the directory is fsynced,
so a crash leaves either the old or the new file (or a stray ``.tmp``, removed on open). A read
that finds the file empty, truncated, of another kind or failing its checksum logs a warning and
returns None, never raises: every checkpoint can be rebuilt or defaulted (see recovery.py).

Functions here are thread-safe as long as two threads do not write the same path.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from storage.layout import TMP_SUFFIX
from wire.batch import crc32c

log = logging.getLogger(__name__)

VERSION = 1
_MAGIC = "tabletlog-checkpoint"


def encode_checkpoint(kind: str, lines: Sequence[str]) -> bytes:
    """The bytes of a checkpoint file of ``kind`` holding ``lines`` (no newlines inside)."""
    assert kind and " " not in kind
    assert all("\n" not in line for line in lines)
    body = "".join(f"{line}\n" for line in (f"{_MAGIC} {VERSION} {kind}", *lines)).encode()
    return body + f"crc32c {crc32c(body):08x}\n".encode()


def decode_checkpoint(data: bytes, kind: str) -> list[str] | None:
    """The value lines of a checkpoint file's bytes, or None if they are not a valid ``kind``."""
    cut = data.rfind(b"crc32c ", 0, max(len(data) - 1, 0))
    if cut <= 0 or data[cut - 1 : cut] != b"\n" or not data.endswith(b"\n"):
        return None
    body, trailer = data[:cut], data[cut:]
    try:
        stored = int(trailer[len(b"crc32c ") :].strip(), 16)
        text = body.decode()
    except (ValueError, UnicodeDecodeError):
        return None
    if stored != crc32c(body):
        return None
    lines = text.split("\n")[:-1]
    if not lines or lines[0] != f"{_MAGIC} {VERSION} {kind}":
        return None
    return lines[1:]


def write_checkpoint(path: Path, kind: str, lines: Sequence[str], *, sync: bool = True) -> None:
    """Atomically replace ``path`` with a checkpoint of ``kind`` holding ``lines``.

    With ``sync`` (the default) the new content is durable when this returns (tmp file fsynced,
    renamed, directory fsynced); without it only atomicity against a process crash is promised.
    Raises OSError if the file cannot be written.
    """
    data = encode_checkpoint(kind, lines)
    tmp = path.with_name(path.name + TMP_SUFFIX)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    tmp.replace(path)
    if sync:
        fsync_directory(path.parent)


def read_checkpoint(path: Path, kind: str) -> list[str] | None:
    """The value lines of checkpoint ``path``; None if it is missing or unreadable.

    A missing file is normal (new log) and silent; an empty or garbled one logs a warning.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as err:
        log.warning("cannot read checkpoint %s: %s; ignoring it", path, err)
        return None
    lines = decode_checkpoint(data, kind)
    if lines is None:
        log.warning("checkpoint %s is empty or garbled (%d bytes); ignoring it", path, len(data))
    return lines


def read_int_checkpoint(path: Path, kind: str) -> int | None:
    """A checkpoint holding one non-negative integer, or None if missing or unreadable."""
    lines = read_checkpoint(path, kind)
    if lines is None:
        return None
    if len(lines) != 1 or not lines[0].isdigit():
        log.warning("checkpoint %s does not hold one integer; ignoring it", path)
        return None
    return int(lines[0])


def remove_file(path: Path, *, sync_directory: bool = False) -> bool:
    """Delete ``path`` if it exists; return whether it existed. Optionally fsync the directory."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    if sync_directory:
        fsync_directory(path.parent)
    return True


def fsync_directory(directory: Path) -> None:
    """Make renames, creations and deletions in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
