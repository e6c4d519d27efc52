"""LogManager: directories, name validation, reopen, delete, listing, shared fd budget."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage.files import FileCache
from storage.manager import LogManager, validate_log_name
from tests.storage.conftest import make_batch, read_all, small_config


@pytest.mark.parametrize("name", ["orders", "a", "A.b_c-9", "x" * 100, "..a"])
def test_valid_log_names(name: str) -> None:
    assert validate_log_name(name) == name


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "x" * 101, "naïve", "a b", "../etc"])
def test_invalid_log_names(name: str) -> None:
    with pytest.raises(ValueError, match="invalid log name"):
        validate_log_name(name)


def test_open_get_reopen_delete_and_list(tmp_path: Path) -> None:
    files = FileCache(capacity=4)
    manager = LogManager(tmp_path, files)
    config = small_config(segment_bytes=1024)
    orders = manager.open_log("orders", 0, config)
    assert manager.open_log("orders", 0, config) is orders
    assert orders.directory == tmp_path / "orders" / "tablet-0"
    for i in range(20):
        orders.append_as_leader(make_batch(3, 50, tag=i), 0)
    manager.open_log("orders", 3, config)
    manager.open_log("clicks", 1, config)
    assert manager.all_on_disk() == [("clicks", 1), ("orders", 0), ("orders", 3)]
    data = read_all(orders)
    assert files.open_count <= 4  # many closed segments, bounded fds
    manager.close_all()
    assert manager.get("orders", 0) is None
    again = manager.open_log("orders", 0, config)
    assert read_all(again) == data
    manager.delete_log("orders", 0)
    manager.delete_log("clicks", 1)  # open: closed and removed
    manager.close_all()
    manager.delete_log("orders", 3)  # closed: removed from disk
    assert manager.all_on_disk() == []
    assert not (tmp_path / "orders").exists() and not (tmp_path / "clicks").exists()
    with pytest.raises(ValueError, match="invalid log name"):
        manager.open_log("../x", 0, config)
    with pytest.raises(ValueError, match="tablet"):
        manager.open_log("x", -1, config)


def test_listing_finishes_interrupted_deletions(tmp_path: Path) -> None:
    (tmp_path / "orders" / "tablet-0.deleted").mkdir(parents=True)
    (tmp_path / "orders" / "tablet-2").mkdir()
    (tmp_path / "orders" / "junk").mkdir()
    (tmp_path / "bad name").mkdir()
    manager = LogManager(tmp_path, FileCache())
    assert manager.all_on_disk() == [("orders", 2)]
    assert not (tmp_path / "orders" / "tablet-0.deleted").exists()
