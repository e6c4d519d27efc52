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
from replication.controller_client import ControllerApi, ControllerClient
from replication.errors import NotController
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

    def active_controller(self) -> ControllerApi:
        """The controller to ask for a change: this node's own while it is active, else the
        node the applied map names, over HTTP — called the same way either way.

        Raises NotController when no other node is known to be the controller (an election,
        or this node's claim is not confirmed yet).
        """
        if self.controller.is_active:
            return self.controller
        controller = self.view.controller
        address = self.address_of(controller) if controller else None
        if address is None or controller == self.node_id:
            raise NotController(controller if controller != self.node_id else None)
        return self.controller_client.at(address)

    def request_timeout_s(self) -> float:
        return self.config.tuning.request_timeout_ms / 1000


CONTEXT = web.AppKey("context", NodeContext)
