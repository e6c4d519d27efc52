"""Fixtures and helpers shared by every test package."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--run-soak", action="store_true", default=False, help="run the long soak tests (make soak)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-soak"):
        return
    skip = pytest.mark.skip(reason="soak tests run with --run-soak (make soak)")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)
