"""A set or status the writer dropped (its queue was full) is sent again by the next poll,
instead of staying missing from the history until the guest changes again."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from collector.driver import KeepsSets
from collector.facts import (
    FactKind,
    FactSet,
    Hostname,
    OsInfo,
    Outcome,
    PollGroup,
    Unavailable,
    fact_set,
)
from collector.service import Service
from collector.targets import Target
from storage.records import InventoryObserved, KindStatus, Record, VmRef
from storage.repository import Store
from tests.collector.test_package_release import packages, runner
from tests.support.service import fast_config


class ReusingDriver:
    """Hands back its last package set until told to forget it, as the real drivers do."""

    def __init__(self) -> None:
        self.forgotten: list[FactKind] = []

    async def heartbeat(self) -> None:
        return None

    async def poll(self, group: PollGroup, known_os: OsInfo | None) -> Mapping[FactKind, Outcome]:
        return {}

    async def close(self) -> None:
        return None

    def forget(self, kind: FactKind) -> None:
        self.forgotten.append(kind)


def hostname(name: str) -> FactSet:
    return fact_set(FactKind.HOSTNAME, [Hostname(name, name)])


def observed(records: list[Record]) -> list[InventoryObserved]:
    return [r for r in records if isinstance(r, InventoryObserved)]


def test_a_dropped_set_is_sent_again_by_the_next_poll_that_gets_it() -> None:
    run, records = runner()
    run.record([(FactKind.HOSTNAME, hostname("a"))])
    [dropped] = observed(records)
    records.clear()
    run.record([(FactKind.HOSTNAME, hostname("a"))])
    assert observed(records) == []  # unchanged: not sent again
    run.unstored(dropped)
    run.record([(FactKind.HOSTNAME, hostname("a"))])
    [again] = observed(records)
    assert again.facts == dropped.facts
    records.clear()
    run.record([(FactKind.HOSTNAME, hostname("a"))])
    assert observed(records) == []  # stored now (as far as the runner knows): once is enough


def test_a_dropped_set_overtaken_by_a_newer_one_is_not_sent_again() -> None:
    run, records = runner()
    run.record([(FactKind.HOSTNAME, hostname("a"))])
    run.record([(FactKind.HOSTNAME, hostname("b"))])
    older, newer = observed(records)
    records.clear()
    run.unstored(older)
    run.record([(FactKind.HOSTNAME, hostname("b"))])
    assert observed(records) == []  # "b" is queued or stored: the store's latest is right
    run.unstored(newer)
    run.record([(FactKind.HOSTNAME, hostname("b"))])
    assert [r.facts for r in observed(records)] == [newer.facts]


def test_a_dropped_package_set_makes_the_driver_build_it_afresh() -> None:
    driver = ReusingDriver()
    assert isinstance(driver, KeepsSets)
    run, records = runner(driver)
    reused = packages("a", "b")
    run.record([(FactKind.PACKAGES, reused)])  # released: the driver keeps only a digest
    [dropped] = observed(records)
    run.unstored(dropped)
    assert driver.forgotten == [FactKind.PACKAGES]
    records.clear()
    # Until the driver has built it again it may still hand back the released set: neither
    # an error nor a record (it has no items to send).
    run.record([(FactKind.PACKAGES, reused)])
    assert observed(records) == []
    assert run.vm.kind(FactKind.PACKAGES).status == "ok"
    assert run.vm.package_counts == {"dpkg": 2}
    run.record([(FactKind.PACKAGES, packages("a", "b"))])  # built afresh: equal, and sent
    [again] = observed(records)
    assert [p.name for p in again.facts.items] == ["a", "b"]  # type: ignore[attr-defined]


def test_a_dropped_status_change_is_sent_again_as_it_was() -> None:
    run, records = runner()
    gone = Unavailable("command guest-get-users disabled")
    run.record([(FactKind.USERS, gone)])
    [dropped] = [r for r in records if isinstance(r, KindStatus)]
    records.clear()
    run.unstored(dropped)
    run.record([(FactKind.USERS, gone)])
    assert [r for r in records if isinstance(r, KindStatus)] == [dropped]  # its own time
    records.clear()
    run.record([(FactKind.USERS, gone)])
    assert [r for r in records if isinstance(r, KindStatus)] == []


def test_a_dropped_status_change_overtaken_by_another_is_not_sent_again() -> None:
    run, records = runner()
    run.record([(FactKind.USERS, Unavailable("command guest-get-users disabled"))])
    [dropped] = [r for r in records if isinstance(r, KindStatus)]
    run.record([(FactKind.USERS, fact_set(FactKind.USERS, []))])  # ok again
    records.clear()
    run.unstored(dropped)
    run.record([(FactKind.USERS, fact_set(FactKind.USERS, []))])
    assert [r for r in records if isinstance(r, KindStatus)] == []


def test_the_service_hands_a_dropped_record_to_its_vms_runner(base: Path) -> None:
    store = Store(f"sqlite:///{base / 'unused.db'}")
    try:
        service = Service(fast_config(base), store)
        target = Target("vm", "qga", str(base / "vm.qga"), "persistent", "host")
        run = service._new_runner(target, 0.0)
        run.record([(FactKind.HOSTNAME, hostname("a"))])
        state = run.vm.kind(FactKind.HOSTNAME)
        assert state.digest is not None
        other = VmRef(key="elsewhere/vm", name="vm", hypervisor="elsewhere", protocol="qga")
        service._unstored(InventoryObserved(other, 0.0, hostname("a")))  # another VM's
        assert state.digest is not None
        service._unstored(InventoryObserved(run.vm.ref, 0.0, hostname("a")))
        assert state.digest is None
    finally:
        store.close()
