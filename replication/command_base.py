"""What every metadata command is built from: the state it changes, its result, its fields.

The commands themselves are in :mod:`replication.commands`, their journal encoding in
:mod:`replication.command_codec`; the design is in docs/architecture.md (metadata commands).

* :data:`State` is the map as plain builtins (layout in :mod:`replication.commands`), so
  snapshots pickle without naming a class.
* :class:`Command` is the base of the frozen command dataclasses; ``apply`` is their one path.
* :class:`Result` is what applying a command did; :class:`Rejected` is how ``apply`` refuses.
* The field types below (:data:`Count`, :data:`NodeId`, ...) are ``Annotated`` with the check
  that turns a decoded journal value into a field value. The checks run when an entry is decoded
  on each voter, i.e. inside the apply path: a journal entry written by another version, or by a
  bug, becomes a recorded ``bad_command`` no-op instead of an exception on every voter.

Everything here is pure and immutable except ``State``, which only the thread applying Raft
entries touches.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

State = dict[str, Any]
"""The map's mutable state: builtins only (see :mod:`replication.commands` for the layout)."""

Scalar = str | int | float | bool | None

MAX_TABLETS = 10_000
MAX_REPLICAS = 15
MAX_OFFSETS_PER_COMMIT = 10_000
MAX_SETTINGS = 64


class Rejected(Exception):
    """A command the map refuses; recorded as a no-op ``Result(ok=False, error=code, ...)``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Result:
    """What applying one command did.

    ``ok`` False: the command was recorded as a no-op and the state is unchanged; ``error`` is
    one of the codes listed in :func:`replication.model.apply_entry`. ``changed``: whether the
    state changed (False for an idempotent retry). ``tablets_changed``: tablets whose leader or
    ISR a node registration or fencing changed. ``index``: the Raft index of the entry, set by
    the Raft layer (0 when applied outside Raft).
    """

    ok: bool
    changed: bool = False
    tablets_changed: int = 0
    error: str | None = None
    message: str = ""
    index: int = 0

    @classmethod
    def rejected(cls, code: str, message: str) -> Result:
        return cls(ok=False, error=code, message=message)


class Command(ABC):
    """A metadata command: a frozen dataclass whose fields are typed with the aliases below.

    ``op`` names it in the journal. ``apply`` validates the command against the state, then
    changes the state in place and returns the result; it raises :class:`Rejected` (leaving the
    state untouched) when the command is stale or impossible. It must be deterministic (no
    clocks, I/O or randomness): every voter replays it and must reach the same state.
    """

    __slots__ = ()
    op: ClassVar[str]

    @abstractmethod
    def apply(self, state: State) -> Result: ...


# ----------------------------------------------------------------------------- field checks
# Each check takes the decoded journal value and the field name, and returns the field value
# (tuples for sequences) or raises Rejected("bad_command"). Type checks only: whether a value
# makes sense for the state (a known node, no duplicates) is for ``apply``.


def _text(value: object, name: str, limit: int = 256) -> str:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise Rejected("bad_command", f"{name} must be a non-empty string of at most {limit}")
    return value


def _node_id(value: object, name: str) -> str:
    return _text(value, name, 64)


def _count(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise Rejected("bad_command", f"{name} must be a non-negative integer")
    return value


def _items(value: object, name: str, limit: int) -> list[object] | tuple[object, ...]:
    if not isinstance(value, list | tuple) or len(value) > limit:
        raise Rejected("bad_command", f"{name} must be a list of at most {limit} items")
    return value


def _node_ids(value: object, name: str) -> tuple[str, ...]:
    items = _items(value, name, MAX_REPLICAS)
    if not items or not all(isinstance(v, str) and v for v in items):
        raise Rejected("bad_command", f"{name} must be a non-empty list of node ids")
    return tuple(str(v) for v in items)


def _assignments(value: object, name: str) -> tuple[tuple[str, ...], ...]:
    return tuple(_node_ids(r, "replicas") for r in _items(value, name, MAX_TABLETS))


def _settings(value: object, name: str) -> dict[str, Scalar]:
    if not isinstance(value, dict) or len(value) > MAX_SETTINGS:
        raise Rejected("bad_command", f"{name} must be a mapping")
    for key, item in value.items():
        if not isinstance(key, str) or not isinstance(item, str | int | float | bool | None):
            raise Rejected("bad_command", f"{name} must map names to scalars")
    for key in ("tablets", "replication_factor"):
        item = value.get(key)
        if isinstance(item, bool) or not isinstance(item, int) or item < 1:
            raise Rejected("bad_command", f"{name}.{key} must be a positive integer")
    return dict(value)


def _offsets(value: object, name: str) -> tuple[tuple[str, int, int], ...]:
    offsets = []
    for item in _items(value, name, MAX_OFFSETS_PER_COMMIT):
        if not isinstance(item, list | tuple) or len(item) != 3:
            raise Rejected("bad_command", "each offset is [log, tablet, offset]")
        log, tablet, offset = item
        offsets.append((_text(log, "log"), _count(tablet, "tablet"), _count(offset, "offset")))
    return tuple(offsets)


Count = Annotated[int, _count]
"""A non-negative integer (terms, epochs, versions, incarnations, tablet indexes)."""
NodeId = Annotated[str, _node_id]
"""A node id (non-empty, at most 64 characters, as the config allows)."""
Text = Annotated[str, _text]
"""A non-empty string of at most 256 characters (log names, groups, addresses)."""
NodeIds = Annotated[tuple[str, ...], _node_ids]
"""Node ids, in order: 1 to MAX_REPLICAS of them."""
Assignments = Annotated[tuple[tuple[str, ...], ...], _assignments]
"""The replicas of each tablet of a new log, tablet by tablet (preferred leader first)."""
Settings = Annotated[Mapping[str, Any], _settings]
"""A log's settings (``LogSettings.to_dict()`` shape); ``tablets`` and ``replication_factor``
are positive integers. Decoded into a fresh dict; never mutated."""
Offsets = Annotated[tuple[tuple[str, int, int], ...], _offsets]
"""Consumer offsets to commit: ``(log, tablet, offset)`` triples."""
