"""A recorded package set is released (digest kept, items dropped) so that drivers reusing it
for an unchanged list hold almost nothing; counts and the store record stay whole."""

from __future__ import annotations

from collector.config import PollingConfig
from collector.facts import FactKind, FactSet, Package, fact_set
from collector.liveness import Liveness
from collector.runner import TargetRunner
from collector.state import FleetState, VmState
from collector.targets import Target
from storage.records import InventoryObserved, Record, VmRef


def runner(driver: object = None) -> tuple[TargetRunner, list[Record]]:
    """A runner of one VM whose records are collected; `driver` only if a test needs one
    (`record()` never touches it)."""
    target = Target("vm", "ovirt", "/nonexistent", "persistent", "host")
    ref = VmRef(key="host/vm", name="vm", hypervisor="host", protocol="ovirt", uuid=None)
    vm = VmState(target=target, ref=ref, liveness=Liveness(late_after=2, down_after=6, now=0.0))
    records: list[Record] = []
    run = TargetRunner(
        vm,
        driver=driver,  # type: ignore[arg-type]
        fleet=FleetState(),
        emit=records.append,
        polling=PollingConfig(),
    )
    return run, records


def packages(*names: str) -> FactSet:
    return fact_set(
        FactKind.PACKAGES, [Package(name=n, version="1", manager="dpkg") for n in names]
    )


def test_release_keeps_digest_and_hands_the_items_to_a_copy() -> None:
    full = packages("a", "b")
    digest = full.digest()
    copy = full.release()
    assert full.released and full.items == () and full.digest() == digest
    assert not copy.released and len(copy.items) == 2 and copy.digest() == digest


def test_runner_records_once_then_reuses_the_released_set() -> None:
    run, records = runner()
    reused = packages("a", "b", "c")
    run.record([(FactKind.PACKAGES, reused)])
    [observed] = [r for r in records if isinstance(r, InventoryObserved)]
    assert len(observed.facts.items) == 3  # the store gets every item
    assert reused.released  # the driver's object is now only a digest
    assert run.vm.package_counts == {"dpkg": 3}
    records.clear()
    run.record([(FactKind.PACKAGES, reused)])  # the driver returns it again: unchanged
    assert not [r for r in records if isinstance(r, InventoryObserved)]
    assert run.vm.package_counts == {"dpkg": 3}
    assert run.vm.kind(FactKind.PACKAGES).status == "ok"
    run.record([(FactKind.PACKAGES, packages("a"))])  # a new list: recorded in full
    assert run.vm.package_counts == {"dpkg": 1}


def test_a_released_set_that_does_not_match_is_an_error_not_a_wipe() -> None:
    run, records = runner()
    first = packages("a")
    run.record([(FactKind.PACKAGES, first)])
    run.record([(FactKind.PACKAGES, packages("b"))])
    records.clear()
    run.record([(FactKind.PACKAGES, first)])  # released, and no longer the recorded digest
    assert not [r for r in records if isinstance(r, InventoryObserved)]
    assert run.vm.kind(FactKind.PACKAGES).status == "error"
    assert run.vm.package_counts == {"dpkg": 1}


def test_a_changed_list_carries_its_changed_ranges_once_the_last_one_was_split() -> None:
    run, records = runner()
    names = [f"pkg{i:03d}" for i in range(200)]
    run.record([(FactKind.PACKAGES, packages(*names))])
    run.record([(FactKind.PACKAGES, packages(*names[1:]))])
    run.record([(FactKind.PACKAGES, packages(*names[2:]))])
    first, second, third = [r for r in records if isinstance(r, InventoryObserved)]
    assert first.delta is None  # nothing split before it
    assert second.delta is not None and second.delta.previous == first.facts.digest()
    assert second.delta.ranges == (0,)
    assert [identity for identity, _, _ in second.delta.items][:1] == ["pkg001"]
    run.unstored(third)  # the store dropped it: the next list is sent in full
    run.record([(FactKind.PACKAGES, packages(*names[3:]))])
    *_, fourth = [r for r in records if isinstance(r, InventoryObserved)]
    assert fourth is not third and fourth.delta is None
