"""ReplicaManager deletes local data only when the applied map proves the log is gone."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from node.config import ClusterConfig, NodeSpec
from replication import model
from replication.command_base import Command
from replication.command_codec import encode
from replication.commands import ClaimController, CreateLog, DeleteLog
from replication.log_settings import LogSettings
from replication.model import ClusterView, TabletId
from replication.peer_client import PeerClient
from replication.replica_manager import ReplicaManager
from storage.files import FileCache
from storage.manager import LogManager

NODES = {"a": "127.0.0.1:1", "b": "127.0.0.1:2", "c": "127.0.0.1:3"}
CONFIG = ClusterConfig(
    "t",
    "secret-secret",
    tuple(NodeSpec(n, "127.0.0.1", 10 + i, 20 + i) for i, n in enumerate(NODES)),
    log_defaults=LogSettings(tablets=1, fsync="never"),
)


class Map:
    """A metadata state driven by model.apply_entry, as the Raft map would be."""

    def __init__(self) -> None:
        self.state: dict[str, Any] = model.initial_state("t", NODES)
        self.index = 0
        self.apply(ClaimController("a", 1))

    def apply(self, cmd: Command) -> None:
        result = model.apply_entry(self.state, encode(cmd))
        assert result.ok, result
        self.index += 1

    def view(self) -> ClusterView:
        return model.to_view(copy.deepcopy(self.state), self.index)


@pytest.fixture
async def manager(tmp_path: Path) -> AsyncIterator[ReplicaManager]:
    session = aiohttp.ClientSession()
    replicas = ReplicaManager(
        "c",
        7,
        CONFIG.replica_settings(),
        LogManager(tmp_path, FileCache()),
        PeerClient(session, "secret-secret"),
    )
    yield replicas
    await replicas.close()
    await session.close()


def create(meta: Map, name: str) -> None:
    settings = LogSettings(tablets=1, replication_factor=3, fsync="never").to_dict()
    meta.apply(CreateLog(1, name, settings, (("a", "b", "c"),)))


async def test_a_lagging_view_never_deletes_local_data(
    manager: ReplicaManager, tmp_path: Path
) -> None:
    meta = Map()
    create(meta, "old")
    stale = meta.view()  # before "kept" exists
    create(meta, "kept")
    manager.on_view(meta.view(), complete=True)
    kept_dir = manager.logs.directory_for("kept", 0)
    assert kept_dir.exists()
    await manager.close()

    fresh = ReplicaManager("c", 8, CONFIG.replica_settings(), manager.logs, manager.peer)
    fresh.on_view(stale, complete=True)  # a restarted node whose map lags behind its disk
    assert kept_dir.exists(), "a view that has not seen the log's creation deleted it"
    assert TabletId("kept", 0) not in fresh.replicas
    fresh.on_view(meta.view(), complete=True)
    assert TabletId("kept", 0) in fresh.replicas
    await fresh.close()


async def test_a_log_deleted_while_down_is_removed(manager: ReplicaManager) -> None:
    meta = Map()
    create(meta, "gone")
    manager.on_view(meta.view(), complete=True)
    gone_dir = manager.logs.directory_for("gone", 0)
    await manager.close()
    meta.apply(DeleteLog(1, "gone"))
    fresh = ReplicaManager("c", 8, CONFIG.replica_settings(), manager.logs, manager.peer)
    fresh.on_view(meta.view(), complete=False)
    assert gone_dir.exists(), "an incomplete view deletes nothing"
    fresh.on_view(meta.view(), complete=True)
    assert not gone_dir.exists()
    await fresh.close()


async def test_a_recreated_log_replaces_the_old_replica(manager: ReplicaManager) -> None:
    meta = Map()
    create(meta, "again")
    manager.on_view(meta.view(), complete=True)
    first = manager.replicas[TabletId("again", 0)].log_id
    meta.apply(DeleteLog(1, "again"))
    create(meta, "again")
    manager.on_view(meta.view(), complete=True)
    assert manager.replicas[TabletId("again", 0)].log_id != first
