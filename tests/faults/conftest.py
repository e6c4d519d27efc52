"""Fixtures of the fault-injection suite."""

from __future__ import annotations

import pytest

from tests.faults.runner import seed_from_env


@pytest.fixture
def seed() -> int:
    """The run's seed ($TABLETLOG_FAULT_SEED to replay one), printed with every table."""
    value = seed_from_env()
    print(f"seed {value} (replay with TABLETLOG_FAULT_SEED={value})")
    return value
