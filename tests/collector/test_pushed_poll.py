"""Polls of a `PushedFacts` driver run in place: what `poll()` does, without a task."""

from __future__ import annotations

import random
from collections.abc import Mapping

from collector.cadence import Cadence
from collector.driver import DriverError, PushedFacts
from collector.facts import FactKind, OsInfo, Outcome, PollGroup, Timezone, fact_set
from collector.protocols.ovirt.driver import OvirtDriver
from collector.protocols.spice.driver import SpiceDriver
from collector.service import _job_of
from storage.records import InventoryObserved

from .test_package_release import runner


class PushingDriver:
    def __init__(self) -> None:
        self.error: DriverError | None = None
        self.asked: list[PollGroup] = []

    def latest(self, group: PollGroup, known_os: OsInfo | None) -> Mapping[FactKind, Outcome]:
        self.asked.append(group)
        if self.error is not None:
            raise self.error
        return {FactKind.TIMEZONE: fact_set(FactKind.TIMEZONE, [Timezone("UTC", 0)])}


def test_the_protocol_drivers_that_never_wait_are_polled_in_place() -> None:
    assert isinstance(OvirtDriver("/nonexistent"), PushedFacts)
    assert isinstance(SpiceDriver("/nonexistent"), PushedFacts)


def test_a_pushed_poll_records_its_outcomes_at_once() -> None:
    driver = PushingDriver()
    run, records = runner(driver)
    assert run.poll_pushed(PollGroup.SYSTEM, driver.latest)
    assert driver.asked == [PollGroup.SYSTEM]
    assert run.vm.kinds[FactKind.TIMEZONE].status == "ok"
    assert any(isinstance(r, InventoryObserved) for r in records)
    assert sum(run.fleet.poll_durations[PollGroup.SYSTEM].counts) == 1


def test_a_driver_error_fails_every_kind_of_the_group() -> None:
    driver = PushingDriver()
    driver.error = DriverError("connect", "refused")
    run, _ = runner(driver)
    assert run.poll_pushed(PollGroup.USERS, driver.latest)
    assert run.vm.kinds[FactKind.USERS].status == "error"
    assert run.vm.kinds[FactKind.USERS].reason == "connect"
    assert run.fleet.poll_errors[("users", "connect")] == 1


def test_a_gone_vm_is_not_polled_and_a_backlogged_package_poll_is_deferred() -> None:
    driver = PushingDriver()
    run, _ = runner(driver)
    run.store_backlogged = lambda: True
    assert not run.poll_pushed(PollGroup.PACKAGES, driver.latest)
    assert run.fleet.polls_deferred["packages"] == 1
    run.vm.liveness.vanished(0.0, "removed")
    assert run.poll_pushed(PollGroup.USERS, driver.latest)
    assert driver.asked == []


def test_the_services_job_polls_in_place_and_retries_a_deferred_round() -> None:
    driver = PushingDriver()
    run, _ = runner(driver)
    cadence = Cadence("packages", 120.0)
    cadence.add(run.name, lambda: None, first_in=60.0)
    job = _job_of(run, PollGroup.PACKAGES, cadence, random.Random(1))
    assert job() is None  # ran in place: no coroutine for a task
    assert driver.asked == [PollGroup.PACKAGES]
    run.store_backlogged = lambda: True
    assert job() is None
    assert run.name in cadence._retries  # retried soon, not at the next 120 s slot
