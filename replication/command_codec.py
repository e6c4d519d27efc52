"""How metadata commands are written into the Raft journal: versioned, builtins only.

A journal entry is a plain dict, e.g. ``{"op": "fence_node", "v": 1, "term": 5, "node": "n1",
"incarnation": 101}``: the command's ``op``, the encoding version ``v`` and its fields, with
tuples written as lists. pysyncobj pickles entries into its journal and onto the wire, and
snapshots are read back by an unpickler that refuses every class, so entries must never hold
one of ours: :func:`encode` writes builtins only and :func:`decode` builds the dataclass again.

Compatibility (docs/architecture.md, metadata commands):

* Version 1 is the format journals have always had (the dicts the command builders wrote
  before commands were typed), so existing journals and snapshots replay unchanged.
* A field added later gets a default in its dataclass; an entry written before it has no such
  key and decodes with the default, without a new version. Unknown keys are ignored.
* A change an old entry cannot be read under (a renamed field, a new meaning) bumps
  :data:`ENCODING_VERSION`, and :func:`decode` gains the step that upgrades entries of the older
  versions. An entry of a version newer than this code is rejected (``unsupported_version``),
  so the voter records a no-op instead of crashing on it.

:func:`decode` is the first step of the apply path, on every voter: a field of the wrong type is
a :class:`~replication.command_base.Rejected` ``bad_command``. Pure and thread-safe.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any, get_type_hints

from replication.command_base import Command, Rejected
from replication.commands import COMMANDS

ENCODING_VERSION = 1

Entry = dict[str, Any]
"""An encoded command: builtins only (str keys; str, int, float, bool, None, list, dict)."""

Check = Callable[[object, str], object]

COMMANDS_BY_OP: dict[str, type[Command]] = {command.op: command for command in COMMANDS}
"""The command class of each ``op`` that :func:`decode` accepts."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Field:
    name: str
    check: Check
    default: object  # dataclasses.MISSING: the field is required


@functools.cache
def _fields_of(command: type[Command]) -> tuple[_Field, ...]:
    """The fields of ``command`` with the check of their ``Annotated`` type, in order."""
    hints = get_type_hints(command, include_extras=True)
    fields = []
    for field in dataclasses.fields(command):  # type: ignore[arg-type]  # subclasses are dataclasses
        checks = getattr(hints[field.name], "__metadata__", ())
        if not checks or not callable(checks[0]):
            raise TypeError(f"{command.__name__}.{field.name} needs an Annotated field type")
        fields.append(_Field(field.name, checks[0], field.default))
    return tuple(fields)


def encode(command: Command) -> Entry:
    """The journal entry for ``command`` (builtins only; see the module docstring)."""
    entry: Entry = {"op": command.op, "v": ENCODING_VERSION}
    for field in _fields_of(type(command)):
        entry[field.name] = _builtin(getattr(command, field.name))
    return entry


def decode(entry: object) -> Command:
    """The command a journal entry encodes; raises Rejected when it cannot be applied.

    Codes: ``bad_command`` (not a mapping, a field missing or of the wrong type),
    ``unsupported_version`` (``v`` is not a version this code reads) and ``unknown_op``.
    """
    if not isinstance(entry, dict):
        raise Rejected("bad_command", "a command is a mapping")
    version = entry.get("v")
    if type(version) is not int or not 1 <= version <= ENCODING_VERSION:
        raise Rejected("unsupported_version", f"command format {version!r}")
    op = entry.get("op")
    command = COMMANDS_BY_OP.get(op) if isinstance(op, str) else None
    if command is None:
        raise Rejected("unknown_op", f"unknown command {str(op)[:64]!r}")
    values: dict[str, object] = {}
    for field in _fields_of(command):
        if field.name in entry:
            values[field.name] = field.check(entry[field.name], field.name)
        elif field.default is not dataclasses.MISSING:
            values[field.name] = field.default
        else:
            raise Rejected("bad_command", f"{op} needs the field {field.name!r}")
    return command(**values)


def _builtin(value: object) -> object:
    if isinstance(value, list | tuple):
        return [_builtin(item) for item in value]
    if isinstance(value, Mapping):
        return {key: _builtin(item) for key, item in value.items()}
    return value
