"""Controller logic against a fake Raft and a fake clock: claiming, liveness, failover, CAS."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from node.config import Tuning
from replication.commands import ClaimController
from replication.controller import Controller
from replication.errors import (
    AlreadyExists,
    CommandRejected,
    InvalidRequest,
    MetadataTimeout,
    NotController,
    StaleEpoch,
    StaleVersion,
    UnknownLog,
)
from replication.log_settings import LogSettings
from replication.metadata import MetadataStore
from tests.replication.test_metadata_store import FakeRaft, config, fake_store

TUNING = Tuning(heartbeat_interval_ms=100, session_timeout_ms=1000)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeHttp:
    """The controller's ``probe``; ``refused`` lists dead addresses."""

    def __init__(self) -> None:
        self.refused: set[str] = set()
        self.probed: list[str] = []

    async def probe(self, address: str, timeout_s: float) -> bool:
        self.probed.append(address)
        return address in self.refused


async def setup(
    leader: bool = True, rebalance_after_s: float | None = None
) -> tuple[Controller, MetadataStore, FakeRaft, FakeClock, FakeHttp]:
    store, raft = fake_store(config(tuning=TUNING))
    raft.leader = leader
    clock, http = FakeClock(), FakeHttp()
    controller = Controller(
        store,
        "n1",
        store_config(store).controller_settings(),
        http.probe,
        clock,
        rebalance_after_s=rebalance_after_s,
    )
    return controller, store, raft, clock, http


def store_config(_store: MetadataStore) -> Any:
    return config(tuning=TUNING)


async def settle(controller: Controller) -> None:
    """Let background registrations and probes finish."""
    for _ in range(100):
        pending = [t for t in controller._role._background.values() if not t.done()]
        if not pending:
            return
        await asyncio.wait(pending, timeout=1)


async def run_for(
    controller: Controller, clock: FakeClock, seconds: float, beating: dict[str, int]
) -> None:
    """Advance time as the real loop would (0.1 s rounds); ``beating`` nodes heartbeat."""
    for _ in range(round(seconds / 0.1)):
        clock.now += 0.1
        for node, incarnation in beating.items():
            await controller.handle_heartbeat(node, incarnation, f"127.0.0.1:710{node[1]}")
        await controller.step()
        await settle(controller)


async def active_cluster(
    incarnations: dict[str, int] | None = None,
    rebalance_after_s: float | None = None,
) -> tuple[Controller, MetadataStore, FakeRaft, FakeClock, FakeHttp]:
    """An active controller n1 with n1..n3 registered."""
    controller, store, raft, clock, http = await setup(rebalance_after_s=rebalance_after_s)
    await controller.step()
    assert controller.is_active
    for node, inc in (incarnations or {"n1": 11, "n2": 12, "n3": 13}).items():
        await controller.handle_heartbeat(node, inc, f"127.0.0.1:710{node[1]}")
    await settle(controller)
    assert all(n.alive for n in store.view.nodes.values())
    return controller, store, raft, clock, http


async def test_a_follower_is_never_active_and_names_the_controller() -> None:
    controller, store, raft, _, _ = await setup(leader=False)
    await controller.step()
    assert not controller.is_active and raft.applied == []
    with pytest.raises(NotController) as info:
        await controller.handle_heartbeat("n2", 1, "x:1")
    assert info.value.controller is None
    await store.propose(ClaimController("n3", 4), timeout_s=1)
    with pytest.raises(NotController) as info:
        await controller.create_log("x", LogSettings())
    assert info.value.controller == "n3"
    store.close()


async def test_leader_claims_for_its_raft_term_and_reclaims_after_a_new_term() -> None:
    controller, store, raft, _, _ = await setup()
    raft.term = 7
    await controller.step()
    assert controller.is_active and controller.term == 7
    assert (store.view.controller, store.view.controller_term) == ("n1", 7)
    raft.leader = False
    assert not controller.is_active
    await controller.step()
    assert controller.term is None
    raft.leader, raft.term = True, 9
    await controller.step()
    assert controller.is_active and store.view.controller_term == 9
    store.close()


async def test_false_success_after_losing_leadership_is_an_unknown_outcome() -> None:
    controller, store, raft, _, _ = await active_cluster()

    def depose() -> None:  # the entry "applies" locally, but this node is no longer leader
        raft.term += 1

    raft.after_apply = depose
    with pytest.raises(MetadataTimeout):
        await controller.create_log("x", LogSettings(tablets=1))
    store.close()


async def test_heartbeats_register_nodes_and_new_incarnations() -> None:
    controller, store, _, _, _ = await active_cluster()
    await controller.create_log("x", LogSettings(tablets=3, replication_factor=3))
    led_by_n2 = [t.id for t in store.view.tablets_led_by("n2")]
    assert len(led_by_n2) == 1
    reply = await controller.handle_heartbeat("n2", 12, "127.0.0.1:7102")
    assert reply["registered"] is True
    reply = await controller.handle_heartbeat("n2", 22, "127.0.0.1:7102")  # restarted
    assert reply["registered"] is False
    await settle(controller)
    assert store.view.nodes["n2"].incarnation == 22
    moved = store.view.tablets[led_by_n2[0]]
    assert moved.leader != "n2" and moved.leader_epoch == 1
    with pytest.raises(CommandRejected):
        await controller.handle_heartbeat("n2", 12, "127.0.0.1:7102")
    with pytest.raises(InvalidRequest):
        await controller.handle_heartbeat("n9", 1, "x:1")
    store.close()


async def test_silent_node_is_fenced_after_the_session_timeout_only() -> None:
    controller, store, _, clock, http = await active_cluster()
    await controller.create_log("x", LogSettings(tablets=3, replication_factor=3))
    await run_for(controller, clock, 0.9, {"n2": 12, "n3": 13})
    await run_for(controller, clock, 0.9, {"n2": 12})  # n3 late: probed, answers, not fenced
    assert all(n.alive for n in store.view.nodes.values())
    assert "127.0.0.1:7103" in http.probed
    await run_for(controller, clock, 0.3, {"n2": 12})  # n3 silent for 1.2 s > 1 s
    assert not store.view.nodes["n3"].alive and store.view.nodes["n2"].alive
    assert store.view.tablets_led_by("n3") == []
    assert all("n3" not in t.isr for t in store.view.tablets.values())
    store.close()


async def test_new_controller_gives_everyone_a_full_session_timeout() -> None:
    controller, store, raft, clock, _ = await active_cluster()
    raft.leader = False
    await controller.step()
    clock.now += 10  # long after anyone's last heartbeat
    raft.leader, raft.term = True, 2
    await controller.step()
    assert controller.is_active
    await run_for(controller, clock, 0.9, {})
    assert all(n.alive for n in store.view.nodes.values())
    await run_for(controller, clock, 0.3, {"n2": 12})
    assert [n.id for n in store.view.nodes.values() if not n.alive] == ["n3"]
    store.close()


async def test_a_stalled_controller_does_not_fence_the_nodes_it_did_not_hear() -> None:
    controller, store, _, clock, _ = await active_cluster()
    await run_for(controller, clock, 0.3, {"n2": 12, "n3": 13})
    clock.now += 5  # the controller's own loop (or process) was stuck for 5 s
    await controller.step()
    await settle(controller)
    assert all(n.alive for n in store.view.nodes.values())
    await run_for(controller, clock, 1.2, {"n2": 12})
    assert [n.id for n in store.view.nodes.values() if not n.alive] == ["n3"]
    store.close()


async def test_refused_probe_fences_at_once() -> None:
    controller, store, _, clock, http = await active_cluster()
    await controller.create_log("x", LogSettings(tablets=3, replication_factor=3))
    http.refused.add("127.0.0.1:7102")
    assert await controller.report_unreachable("n3", "n1") == {"fenced": False}  # itself
    assert await controller.report_unreachable("n3", "n2") == {"fenced": True}
    assert not store.view.nodes["n2"].alive
    (moved,) = [t for t in store.view.tablets.values() if t.replicas[0] == "n2"]
    assert moved.leader == moved.replicas[1] and moved.leader_epoch == 1
    # a late heartbeat is probed too: a refused node is fenced long before the session ends
    http.refused.add("127.0.0.1:7103")
    clock.now += 0.25
    await controller.handle_heartbeat("n1", 11, "127.0.0.1:7101")
    await controller.step()
    await settle(controller)
    assert not store.view.nodes["n3"].alive
    store.close()


async def test_create_log_spreads_leaders_and_rejects_duplicates() -> None:
    controller, store, _, _, _ = await active_cluster()
    tablets = await controller.create_log("x", LogSettings(tablets=6, replication_factor=2))
    assert [t.index for t in tablets] == list(range(6))
    assert sorted(t.leader or "" for t in tablets) == ["n1", "n1", "n2", "n2", "n3", "n3"]
    with pytest.raises(AlreadyExists):
        await controller.create_log("x", LogSettings())
    with pytest.raises(InvalidRequest):
        await controller.create_log("y", LogSettings(replication_factor=4, min_insync_replicas=1))
    await controller.delete_log("x")
    assert "x" not in store.view.logs
    with pytest.raises(UnknownLog):
        await controller.delete_log("x")
    store.close()


async def test_alter_isr_and_elect_leader_are_compare_and_set() -> None:
    controller, store, _, _, _ = await active_cluster()
    (t0,) = await controller.create_log("x", LogSettings(tablets=1, replication_factor=3))
    assert t0.leader is not None
    other = next(r for r in t0.replicas if r != t0.leader)
    shrunk = await controller.alter_isr(
        "x", 0, t0.leader, t0.leader_epoch, t0.version, [t0.leader, other]
    )
    assert set(shrunk.isr) == {t0.leader, other} and shrunk.version == t0.version + 1
    with pytest.raises(StaleVersion):
        await controller.alter_isr("x", 0, t0.leader, t0.leader_epoch, t0.version, [t0.leader])
    moved = await controller.elect_leader("x", 0, shrunk.leader_epoch, other)
    assert moved.leader == other and moved.leader_epoch == t0.leader_epoch + 1
    with pytest.raises(StaleEpoch):  # the deposed leader's request
        await controller.alter_isr("x", 0, t0.leader, t0.leader_epoch, moved.version, [t0.leader])
    with pytest.raises(UnknownLog):
        await controller.alter_isr("nope", 0, "n1", 0, 0, ["n1"])
    store.close()


async def test_commit_offsets_goes_through_the_map() -> None:
    controller, store, _, _, _ = await active_cluster()
    await controller.create_log(
        "x", LogSettings(tablets=2, replication_factor=1, min_insync_replicas=1)
    )
    await controller.commit_offsets("g", [["x", 1, 40]])
    assert store.view.consumer_offsets == {("g", "x", 1): 40}
    with pytest.raises(UnknownLog):
        await controller.commit_offsets("g", [["x", 5, 1]])
    store.close()


async def test_create_right_after_the_claim_waits_for_nodes_to_register() -> None:
    controller, store, _, clock, _ = await setup()
    await controller.step()
    for node in ("n1", "n2"):
        await controller.handle_heartbeat(node, 1, f"127.0.0.1:710{node[1]}")
    await settle(controller)
    creating = asyncio.ensure_future(
        controller.create_log(
            "x", LogSettings(tablets=3, replication_factor=2, min_insync_replicas=1)
        )
    )
    await asyncio.sleep(0.05)
    assert not creating.done(), "placement waits for n3, still starting"
    await controller.handle_heartbeat("n3", 1, "127.0.0.1:7103")
    tablets = await asyncio.wait_for(creating, 2)
    assert sorted(t.leader or "" for t in tablets) == ["n1", "n2", "n3"]
    # once a session timeout has passed since the claim, a dead node is simply dead
    await run_for(controller, clock, 1.5, {"n1": 1, "n2": 1})
    assert not store.view.nodes["n3"].alive
    tablets = await asyncio.wait_for(controller.create_log("y", LogSettings(tablets=2)), 0.5)
    assert {t.leader for t in tablets} == {"n1", "n2"}
    store.close()


async def test_leadership_returns_to_the_preferred_replica_once_it_is_stable() -> None:
    controller, store, _, clock, http = await active_cluster(rebalance_after_s=3.0)
    await controller.create_log("x", LogSettings(tablets=3, replication_factor=3))
    (preferred_n2,) = [t.id for t in store.view.tablets.values() if t.replicas[0] == "n2"]

    async def beat(node: str, incarnation: int) -> None:
        await controller.handle_heartbeat(node, incarnation, f"127.0.0.1:710{node[1]}")

    http.refused.add("127.0.0.1:7102")
    await controller.report_unreachable("n3", "n2")  # n2 crashed: its tablet moved away
    assert store.view.tablets[preferred_n2].leader != "n2"
    http.refused.clear()
    await beat("n2", 22)  # restarted, registers again (not in the ISR of that tablet yet)
    await settle(controller)
    assert store.view.nodes["n2"].alive
    tablet = store.view.tablets[preferred_n2]
    assert tablet.leader is not None
    await controller.alter_isr(
        "x", tablet.index, tablet.leader, tablet.leader_epoch, tablet.version, [*tablet.isr, "n2"]
    )  # caught up again
    everyone = {"n1": 11, "n2": 22, "n3": 13}
    await run_for(controller, clock, 2.0, everyone)  # n2 back for 2 s: not yet stable
    assert store.view.tablets[preferred_n2].leader != "n2"
    await run_for(controller, clock, 1.5, everyone)
    moved = store.view.tablets[preferred_n2]
    assert moved.leader == "n2" and moved.leader_epoch == tablet.leader_epoch + 1
    assert all(t.leader == t.replicas[0] for t in store.view.tablets.values())
    store.close()
