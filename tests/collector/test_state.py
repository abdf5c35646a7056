"""`VmState.generation` moves with every change `/metrics` would show, except liveness and
last-success times, and stays put for a poll that found the same facts."""

from __future__ import annotations

from collector.facts import FactKind, Package, UserSession, fact_set
from collector.liveness import Liveness
from collector.state import VmState
from collector.targets import Target
from storage.records import VmRef


def vm_state() -> VmState:
    target = Target("vm", "qga", "/run/vm.sock", "persistent", "hv")
    ref = VmRef("hv/vm", "vm", "hv", "qga")
    return VmState(target, ref, Liveness(late_after=2, down_after=6, now=0.0))


def test_an_equal_set_keeps_the_one_remembered_and_the_generation() -> None:
    vm = vm_state()
    first = fact_set(FactKind.USERS, [UserSession("ann", "", 1.0)])
    vm.remember(first)
    generation = vm.generation
    vm.remember(fact_set(FactKind.USERS, [UserSession("ann", "", 1.0)]))
    assert vm.facts(FactKind.USERS) is first
    assert vm.generation == generation
    changed = fact_set(FactKind.USERS, [])
    vm.remember(changed)
    assert vm.facts(FactKind.USERS) is changed
    assert vm.generation > generation


def test_package_counts_move_the_generation_only_when_they_change() -> None:
    vm = vm_state()
    vm.remember(fact_set(FactKind.PACKAGES, [Package("a", "1", manager="dpkg")]))
    generation = vm.generation
    vm.remember(fact_set(FactKind.PACKAGES, [Package("a", "2", manager="dpkg")]))
    assert (vm.package_counts, vm.generation) == ({"dpkg": 1}, generation)
    vm.remember(fact_set(FactKind.PACKAGES, []))
    assert vm.package_counts == {}
    assert vm.generation > generation
    assert vm.facts(FactKind.PACKAGES) is None  # sets of packages are never kept


def test_status_and_new_kinds_move_it_heartbeats_and_successes_do_not() -> None:
    vm = vm_state()
    generation = vm.generation
    vm.succeeded(FactKind.OS, 5.0)  # creates the kind's state: counted
    assert vm.generation > generation
    generation = vm.generation
    vm.succeeded(FactKind.OS, 6.0)
    vm.liveness.answered(6.0)
    assert vm.generation == generation
    assert vm.kind(FactKind.OS).last_success == 6.0
    vm.set_status(FactKind.OS, "error", "timeout")
    assert vm.generation > generation
    assert (vm.kind(FactKind.OS).status, vm.kind(FactKind.OS).reason) == ("error", "timeout")
