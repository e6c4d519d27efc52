"""The error base every tabletlog layer and the client share. Thread-safe (plain classes).

A class declares only its ``code``; ``retriable``, ``outcome_unknown`` and ``refresh_metadata``
come from that code's entry in :mod:`wire.error_codes`, filled in when the class is defined. A
class whose code is not in the table fails at import, so no layer can invent a code the others
do not know, and the nodes and the client cannot disagree on what a code means.
"""

from __future__ import annotations

from typing import ClassVar

from wire.error_codes import ERROR_CODES, error_code

_FLAGS = ("retriable", "outcome_unknown", "refresh_metadata")


class TabletLogError(Exception):
    """Base for every error raised on purpose by tabletlog (storage, replication, node, client).

    ``retriable``: the same request may succeed later; ``outcome_unknown``: a write may or may not
    have happened; ``refresh_metadata``: refresh who leads what before retrying. All three are
    the table's flags for ``code`` (see :mod:`wire.error_codes`).
    """

    code: ClassVar[str] = "internal"
    retriable: ClassVar[bool] = error_code("internal").retriable
    outcome_unknown: ClassVar[bool] = error_code("internal").outcome_unknown
    refresh_metadata: ClassVar[bool] = error_code("internal").refresh_metadata

    def __init_subclass__(cls, **kwargs: object) -> None:
        """Take the flags of the class's ``code`` from the table; TypeError for a code not in
        the table or a flag declared differently from the table."""
        super().__init_subclass__(**kwargs)
        entry = ERROR_CODES.get(cls.code)
        if entry is None:
            raise TypeError(f"{cls.__qualname__}.code {cls.code!r} is not in wire.error_codes")
        for flag in _FLAGS:
            declared = cls.__dict__.get(flag)
            if declared is not None and declared != getattr(entry, flag):
                raise TypeError(
                    f"{cls.__qualname__}.{flag} = {declared!r} disagrees with wire.error_codes "
                    f"for {cls.code!r}; declare only the code"
                )
        cls.retriable = entry.retriable
        cls.outcome_unknown = entry.outcome_unknown
        cls.refresh_metadata = entry.refresh_metadata


class CorruptBatch(TabletLogError):
    """Bytes that should hold a record batch fail a length or checksum check.

    On the append path the request is rejected; in a segment it means the replica must re-sync
    from the leader. Corrupt bytes are never served.
    """

    code = "corrupt_batch"
