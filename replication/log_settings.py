"""A log's settings as the metadata map stores them, with their validation and merge rule.

The cluster config's ``log_defaults`` and a create-log request's overrides are both merged
into a :class:`LogSettings`; its :meth:`~LogSettings.to_dict` is what the map records for the
log, and :meth:`~LogSettings.storage_config` what each replica opens its tablets with. Every
mistake raises :class:`LogSettingsError` with a one-line reason naming the setting.
Immutable; thread-safe.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from storage.config import FsyncPolicy, LogConfig

__all__ = ["LogSettings", "LogSettingsError"]


class LogSettingsError(ValueError):
    """A log setting is unknown or has a bad value; the message is one line naming it."""


@dataclass(frozen=True, slots=True)
class LogSettings:
    """A log's settings: cluster-wide defaults in ``log_defaults``, overridable per log.

    Times in milliseconds; ``None`` for retention means keep forever.
    """

    tablets: int = 3
    replication_factor: int = 3
    min_insync_replicas: int = 2
    segment_bytes: int = 64 * 1024 * 1024
    segment_ms: int | None = 7 * 24 * 3600 * 1000
    retention_ms: int | None = 7 * 24 * 3600 * 1000
    retention_bytes: int | None = None
    fsync: FsyncPolicy = "always"
    unclean_leader_election: bool = False

    def validate(self) -> None:
        if not 1 <= self.tablets <= 10_000:
            raise LogSettingsError("tablets must be between 1 and 10000")
        if not 1 <= self.replication_factor <= 15:
            raise LogSettingsError("replication_factor must be between 1 and 15")
        if not 1 <= self.min_insync_replicas <= self.replication_factor:
            raise LogSettingsError("min_insync_replicas must be between 1 and replication_factor")
        try:
            self.storage_config()
        except ValueError as exc:
            raise LogSettingsError(str(exc)) from None

    def storage_config(self) -> LogConfig:
        return LogConfig(
            segment_bytes=self.segment_bytes,
            segment_ms=self.segment_ms,
            retention_ms=self.retention_ms,
            retention_bytes=self.retention_bytes,
            fsync=self.fsync,
        )

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def merged(self, overrides: Mapping[str, Any]) -> LogSettings:
        """These settings with ``overrides`` applied; raises LogSettingsError on bad keys or
        values."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise LogSettingsError(f"unknown log setting {unknown[0]!r}")
        values: dict[str, Any] = {k: _check_log_value(k, v) for k, v in overrides.items()}
        result = replace(self, **values)
        result.validate()
        return result


_OPTIONAL_INT_SETTINGS = {"segment_ms", "retention_ms", "retention_bytes"}


def _check_log_value(key: str, value: object) -> object:
    """Type-check one log setting; returns the value to store."""
    if key == "fsync":
        if value in ("always", "never"):
            return value
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
        if isinstance(value, str) and value.isdigit() and int(value) > 0:
            return int(value)
        raise LogSettingsError(
            "fsync must be 'always', 'never' or a positive number of milliseconds"
        )
    if key == "unclean_leader_election":
        if not isinstance(value, bool):
            raise LogSettingsError("unclean_leader_election must be true or false")
        return value
    if value is None and key in _OPTIONAL_INT_SETTINGS:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise LogSettingsError(f"{key} must be an integer")
    return value
