"""What every HTTP handler of a node needs, in one typed object stored on the app.

Built once by :mod:`node.server`; every field is used from the event-loop thread only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from node.config import ClusterConfig, NodeSpec
from node.metrics import NodeMetrics
from replication.controller import Controller
from replication.controller_client import ControllerClient
from replication.metadata import MetadataStore
from replication.model import ClusterView
from replication.peer_client import PeerClient
from replication.replica_manager import ReplicaManager

NO_FORWARD_HEADER = "X-Tabletlog-No-Forward"


@dataclass(slots=True)
class NodeContext:
    """The node's components, shared by its handlers."""

    config: ClusterConfig
    spec: NodeSpec
    incarnation: int
    store: MetadataStore
    replicas: ReplicaManager
    controller: Controller
    controller_client: ControllerClient
    peer: PeerClient
    session: aiohttp.ClientSession
    metrics: NodeMetrics
    round_robin: dict[str, int] = field(default_factory=dict)

    @property
    def node_id(self) -> str:
        return self.spec.id

    @property
    def view(self) -> ClusterView:
        return self.store.view

    def address_of(self, node_id: str) -> str | None:
        node = self.view.nodes.get(node_id)
        return node.address if node is not None else None

    def request_timeout_s(self) -> float:
        return self.config.tuning.request_timeout_ms / 1000


CONTEXT = web.AppKey("context", NodeContext)
