"""The SpiceSession fact through the store (validity rows, events), metrics and `show`."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from collector import queries
from collector.config import from_dict
from collector.facts import FactKind, FactSet, SpiceSession, fact_set
from collector.liveness import Liveness
from collector.state import FleetState, VmState
from collector.targets import Target
from exporters.metrics import FleetCollector
from storage.diff import EventType
from storage.records import InventoryObserved, KindStatus, VmRef
from storage.repository import Store

T0 = 1_700_000_000.0
REF = VmRef(key="hv/desk", name="desk", hypervisor="hv", protocol="spice")
CAPS = ("REPLY", "GUEST_LINEEND_LF")


def session(since: float, activity: int = 0) -> SpiceSession:
    return SpiceSession(
        present=True, since=since, capabilities=CAPS, flavour="linux", activity_count=activity
    )


def observed(at: float, *items: SpiceSession) -> InventoryObserved:
    return InventoryObserved(REF, at, fact_set(FactKind.SPICE, items))


def test_activity_does_not_churn_the_digest() -> None:
    assert fact_set(FactKind.SPICE, [session(T0)]).digest() == (
        fact_set(FactKind.SPICE, [session(T0, activity=99)]).digest()
    )
    assert fact_set(FactKind.SPICE, [session(T0)]).digest() != (
        fact_set(FactKind.SPICE, [session(T0 + 1)]).digest()
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'gw.db'}")
    s.upgrade()
    yield s
    s.close()


def test_sessions_are_validity_rows_with_start_and_end_events(store: Store) -> None:
    store.write([observed(T0)])  # first poll: no session yet
    store.write([observed(T0 + 10, session(T0 + 5))])
    store.write([observed(T0 + 20)])
    store.write([observed(T0 + 30, session(T0 + 25))])
    events = list(reversed(store.events("desk", kind=FactKind.SPICE)))
    assert [e.type for e in events] == [
        EventType.INVENTORY_FIRST_SEEN,
        EventType.SPICE_SESSION_STARTED,
        EventType.SPICE_SESSION_ENDED,
        EventType.SPICE_SESSION_STARTED,
    ]
    assert {e.subject for e in events[1:]} == {"linux"}
    rows = store.history("desk", kind=FactKind.SPICE)
    assert len(rows) == 2
    assert sorted((r.valid_to is None) for r in rows) == [False, True]


def vm_with(facts: FactSet | None) -> VmState:
    target = Target("desk", "spice", "/run/desk.spice", "persistent", "hv")
    vm = VmState(target=target, ref=REF, liveness=Liveness(late_after=2, down_after=6, now=T0))
    if facts is not None:
        vm.remember(facts)
    return vm


def exposition(*vms: VmState) -> str:
    fleet = FleetState()
    for vm in vms:
        fleet.vms[vm.target.name] = vm
    registry = CollectorRegistry()
    registry.register(FleetCollector(fleet))
    return generate_latest(registry).decode()


def test_metrics_present_flavour_and_activity() -> None:
    body = exposition(vm_with(fact_set(FactKind.SPICE, [session(T0, activity=4)])))
    assert 'guestwatch_spice_session_present{domain="desk"} 1.0' in body
    assert 'guestwatch_spice_agent_info{domain="desk",flavour="linux"} 1.0' in body
    assert 'guestwatch_spice_activity_total{domain="desk"} 4.0' in body


def test_metrics_absent_session_and_non_spice_vm() -> None:
    body = exposition(vm_with(fact_set(FactKind.SPICE, [])))
    assert 'guestwatch_spice_session_present{domain="desk"} 0.0' in body
    assert "guestwatch_spice_agent_info{" not in body
    assert "guestwatch_spice_activity_total{" not in body
    assert "guestwatch_spice_session_present{" not in exposition(vm_with(None))


def test_show_prints_the_session(store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    store.write([observed(T0, session(T0 - 5)), KindStatus(REF, T0, FactKind.SPICE, "ok")])
    config = from_dict({"storage": {"url": f"sqlite:///{tmp_path / 'gw.db'}"}})
    args = argparse.Namespace(domain="desk", at=None, output="table")
    assert queries.show(config, args) == 0
    out = capsys.readouterr().out
    assert "spice: linux agent session since 2023-11-14 22:13:15" in out
    assert "  REPLY GUEST_LINEEND_LF" in out
    store.write([observed(T0 + 10)])
    assert queries.show(config, args) == 0
    assert "spice: no session" in capsys.readouterr().out
