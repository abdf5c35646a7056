"""A VM known by its UUID moving between hypervisors: one history, a `migrated` event."""

from __future__ import annotations

from collector.facts import FactKind
from storage.records import HeartbeatSeen, KindStatus, LivenessChanged
from storage.repository import Store
from tests.storage.conftest import T0, vm

UUID = "0f8f2b5e-2d4f-4c61-8a8e-3f7a1c2b9d10"


def test_migration_is_one_history_and_the_old_host_cannot_take_it_back(store: Store) -> None:
    on_a, on_b = vm("db-1", UUID, "host-a"), vm("db-1", UUID, "host-b")
    store.write([LivenessChanged(on_a, T0, "unknown", "up"), HeartbeatSeen(on_a, T0)])
    store.write([LivenessChanged(on_b, T0 + 10, "unknown", "up"), HeartbeatSeen(on_b, T0 + 10)])
    # The source's last words arrive late: failed polls and `gone` do not move the VM back.
    store.write([
        KindStatus(on_a, T0 + 9, FactKind.OS, "error", "connect"),
        LivenessChanged(on_a, T0 + 9, "up", "gone", "agent socket vanished"),
    ])  # fmt: skip
    (info,) = store.list_vms()
    assert info.hypervisor == "host-b"
    assert info.state == "up"
    events = store.events(domain=UUID)
    assert [(e.old, e.new) for e in events if e.type == "migrated"] == [("host-a", "host-b")]
    liveness = [(e.old, e.new) for e in reversed(events) if e.type == "liveness_changed"]
    assert liveness == [("unknown", "up"), ("up", "gone"), ("unknown", "up")]  # by time


def test_a_vm_known_only_by_name_is_one_vm_per_host(store: Store) -> None:
    store.write([HeartbeatSeen(vm("web", None, "host-a"), T0)])
    store.write([HeartbeatSeen(vm("web", None, "host-b"), T0)])
    assert sorted(v.key for v in store.list_vms()) == ["host-a/web", "host-b/web"]
    assert not [e for e in store.events() if e.type == "migrated"]


def test_a_late_write_from_the_old_host_does_not_claim_the_vm_back(store: Store) -> None:
    on_a, on_b = vm("db-1", UUID, "host-a"), vm("db-1", UUID, "host-b")
    store.write([LivenessChanged(on_a, T0, "unknown", "up"), HeartbeatSeen(on_a, T0)])
    store.write([LivenessChanged(on_b, T0 + 10, "unknown", "up"), HeartbeatSeen(on_b, T0 + 10)])
    # hv-a's writer flushes after hv-b's: its last answer (T0 + 9) predates hv-b's heartbeat.
    store.write([HeartbeatSeen(on_a, T0 + 9), LivenessChanged(on_a, T0 + 9.5, "up", "gone")])
    (info,) = store.list_vms()
    assert (info.hypervisor, info.state) == ("host-b", "up")
    migrations = [(e.old, e.new) for e in store.events(domain=UUID) if e.type == "migrated"]
    assert migrations == [("host-a", "host-b")]
