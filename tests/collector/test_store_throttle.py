"""Timestamps that move every poll reach the store at most every five minutes per VM and kind;
transitions, status changes and first answers reach it at once."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

import pytest

from collector.config import PollingConfig
from collector.driver import DriverError
from collector.facts import FactKind, Hostname, OsInfo, Outcome, Package, PollGroup, fact_set
from collector.liveness import Liveness
from collector.runner import STORE_TIMESTAMPS_EVERY, TargetRunner
from collector.state import FleetState, VmState
from collector.targets import Target
from storage.records import (
    HeartbeatSeen,
    InventoryObserved,
    KindStatus,
    KindSucceeded,
    LivenessChanged,
    Record,
    VmRef,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Driver:
    def __init__(self) -> None:
        self.fail = False

    async def heartbeat(self) -> None:
        if self.fail:
            raise DriverError("disconnected")

    async def poll(self, group: PollGroup, known_os: OsInfo | None) -> Mapping[FactKind, Outcome]:
        raise AssertionError("not polled here")

    async def close(self) -> None:
        return None


def make() -> tuple[TargetRunner, Driver, Clock, list[Record]]:
    clock = Clock()
    target = Target("vm", "qga", "/nonexistent", "persistent", "host")
    ref = VmRef(key="host/vm", name="vm", hypervisor="host", protocol="qga", uuid=None)
    vm = VmState(target=target, ref=ref, liveness=Liveness(late_after=1, down_after=3, now=0.0))
    driver = Driver()
    records: list[Record] = []
    run = TargetRunner(
        vm, driver=driver, fleet=FleetState(), emit=records.append, polling=PollingConfig(),
        clock=clock,
    )  # fmt: skip
    return run, driver, clock, records


def kinds(records: list[Record]) -> list[type[Record]]:
    return [type(r) for r in records]


async def test_heartbeats_are_stored_on_transitions_and_every_few_minutes() -> None:
    run, driver, clock, records = make()
    await run.heartbeat()  # unknown -> up: transition and first last-seen
    assert kinds(records) == [LivenessChanged, HeartbeatSeen]
    records.clear()
    for _ in range(int(STORE_TIMESTAMPS_EVERY // 5) - 1):
        clock.now += 5
        await run.heartbeat()
    assert records == []  # in memory only: metrics show the exact time
    assert run.vm.liveness.last_heartbeat == clock.now
    clock.now += 5
    await run.heartbeat()
    assert kinds(records) == [HeartbeatSeen]
    records.clear()
    clock.now += 5
    await run.heartbeat()  # answered in memory only
    answered = clock.now
    driver.fail = True
    clock.now += 5
    await run.heartbeat()  # one missed: up -> late, and the exact last answer is stored first
    assert kinds(records) == [HeartbeatSeen, LivenessChanged]
    assert isinstance(records[0], HeartbeatSeen) and records[0].at == answered
    driver.fail = False
    clock.now += 5
    await run.heartbeat()  # late -> up: stored at once, though 10 s after the last one
    assert kinds(records) == [HeartbeatSeen, LivenessChanged, LivenessChanged, HeartbeatSeen]
    assert isinstance(records[-1], HeartbeatSeen) and records[-1].at == clock.now


def test_successes_are_stored_every_few_minutes_and_after_a_status_change() -> None:
    run, _, clock, records = make()
    hostname = fact_set(FactKind.HOSTNAME, [Hostname(name="a")])
    run.record([(FactKind.HOSTNAME, hostname)])
    assert KindSucceeded in kinds(records)
    records.clear()
    clock.now += 10
    run.record([(FactKind.HOSTNAME, hostname)])
    assert records == []
    assert run.vm.kind(FactKind.HOSTNAME).last_success == clock.now
    clock.now += STORE_TIMESTAMPS_EVERY
    run.record([(FactKind.HOSTNAME, hostname)])
    assert kinds(records) == [KindSucceeded]
    records.clear()
    clock.now += 1
    from collector.facts import PollError

    run.record([(FactKind.HOSTNAME, PollError("timeout", ""))])
    clock.now += 1
    run.record([(FactKind.HOSTNAME, hostname)])  # error -> ok: the success is stored at once
    assert kinds(records) == [KindStatus, KindStatus, KindSucceeded]


class PollingDriver(Driver):
    def __init__(self) -> None:
        super().__init__()
        self.polled: list[PollGroup] = []

    async def poll(self, group: PollGroup, known_os: OsInfo | None) -> Mapping[FactKind, Outcome]:
        self.polled.append(group)
        return {FactKind.HOSTNAME: fact_set(FactKind.HOSTNAME, [Hostname(name="a")])}


async def test_package_polls_wait_while_the_database_writer_is_far_behind() -> None:
    backlogged = True
    target = Target("vm", "qga", "/nonexistent", "persistent", "host")
    ref = VmRef(key="host/vm", name="vm", hypervisor="host", protocol="qga", uuid=None)
    vm = VmState(target=target, ref=ref, liveness=Liveness(late_after=1, down_after=3, now=0.0))
    driver = PollingDriver()
    fleet = FleetState()
    run = TargetRunner(
        vm, driver=driver, fleet=fleet, emit=lambda r: None, polling=PollingConfig(),
        store_backlogged=lambda: backlogged,
    )  # fmt: skip
    assert await run.poll(PollGroup.PACKAGES) is False  # deferred: retried soon
    assert await run.poll(PollGroup.SYSTEM) is True  # small sets still go
    assert driver.polled == [PollGroup.SYSTEM]
    assert fleet.polls_deferred == {"packages": 1}
    backlogged = False
    assert await run.poll(PollGroup.PACKAGES) is True
    assert driver.polled == [PollGroup.SYSTEM, PollGroup.PACKAGES]


async def test_the_service_retries_a_deferred_package_poll_long_before_its_next_slot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from collector import service as service_module
    from collector.config import from_dict
    from collector.service import DEFERRED_RETRY_SECONDS, Service

    driver = PollingDriver()
    target = Target("vm", "qga", "/run/vm.qga", "persistent", "h")
    monkeypatch.setattr(service_module, "discover", lambda config: {"vm": target})
    monkeypatch.setattr(service_module, "socket_exists", lambda path: True)
    config = from_dict({"storage": {"url": f"sqlite:///{tmp_path / 'gw.db'}"}})
    service = Service(config, store=None, driver_factory=lambda *a: driver)  # type: ignore[arg-type]
    backlogged = [True]
    monkeypatch.setattr(service, "_store_backlogged", lambda: backlogged[0])
    service.scan()
    packages = service.cadences[PollGroup.PACKAGES]
    assert packages.interval == 3600.0
    clock = [packages.clock()]
    packages.clock = lambda: clock[0]
    clock[0] += 10.0  # past the first slot (spread over at most 5 s, then 1 s later)
    packages.start_due()
    await asyncio.sleep(0.01)
    assert driver.polled == [] and service.fleet.polls_deferred == {"packages": 1}
    backlogged[0] = False
    clock[0] += DEFERRED_RETRY_SECONDS * 2 + 0.1  # the retry is due; the next slot is not
    packages.start_due()
    await asyncio.sleep(0.01)
    assert driver.polled == [PollGroup.PACKAGES]


def test_the_service_defers_package_polls_with_hysteresis(tmp_path: Path) -> None:
    from collector.config import from_dict
    from collector.service import STORE_BACKLOG_ROWS, Service

    config = from_dict({"storage": {"url": f"sqlite:///{tmp_path / 'gw.db'}"}})
    service = Service(config, store=None)  # type: ignore[arg-type]  # the writer never writes
    writer = service.writer
    ref = VmRef(key="host/vm", name="vm", hypervisor="host", protocol="qga", uuid=None)
    big = fact_set(
        FactKind.PACKAGES,
        [Package(name=f"p{i}", version="1", manager="dpkg") for i in range(STORE_BACKLOG_ROWS)],
    )
    assert not service._store_backlogged()
    writer.submit(InventoryObserved(ref, 1.0, big))  # one row more than the threshold
    assert service._store_backlogged()
    writer._backlog_items = STORE_BACKLOG_ROWS * 3 // 4  # partly written: still waiting
    assert service._store_backlogged()
    writer._backlog_items = STORE_BACKLOG_ROWS // 2 - 1
    assert not service._store_backlogged()
