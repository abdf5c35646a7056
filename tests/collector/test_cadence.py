"""The fleet-wide cadence keeps the per-VM job semantics: phase, interval without drift,
jitter within bounds, no overlapping run, coalesced missed slots, removal and shutdown."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from collector.cadence import Cadence, Job


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def recorder(
    log: list[tuple[str, float]], clock: Clock, name: str, hold: asyncio.Event | None = None
) -> Job:
    async def job() -> None:
        log.append((name, clock.now))
        if hold is not None:
            await hold.wait()

    return job


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def test_each_member_runs_at_its_phase_then_every_interval_without_drift() -> None:
    clock, log = Clock(), list[tuple[str, float]]()
    cadence = Cadence("heartbeat", 5.0, clock=clock)
    cadence.add("a", recorder(log, clock, "a"), first_in=1.0)
    cadence.add("b", recorder(log, clock, "b"), first_in=3.0)
    for step in range(1, 47):  # 0.25 s ticks for 11.5 s, each tick a little late
        clock.now = 100.0 + step * 0.25 + 0.01
        cadence.start_due()
        await settle()
    assert [name for name, _ in log] == ["a", "b", "a", "b", "a"]
    a_runs = [at for name, at in log if name == "a"]
    assert a_runs == pytest.approx([101.01, 106.01, 111.01])  # late ticks never accumulate
    assert cadence.tick_seconds == 0.25
    assert Cadence("packages", 120.0).tick_seconds == 1.0
    assert Cadence("users", 10.0).tick_seconds == 0.5
    assert Cadence("fast", 1.0).tick_seconds == 0.1


async def test_jitter_delays_each_run_within_its_fraction_of_the_interval() -> None:
    clock, log = Clock(), list[tuple[str, float]]()
    cadence = Cadence("users", 10.0, jitter=0.2, clock=clock, rng=random.Random(3))
    cadence.add("a", recorder(log, clock, "a"), first_in=0.0)
    while len(log) < 30:
        clock.now += 0.05
        cadence.start_due()
        await settle()
    starts = [at - 100.0 for _, at in log]
    for n, at in enumerate(starts[1:], start=1):
        assert n * 10.0 <= at <= n * 10.0 + 2.0 + 0.05
    assert len({round(at % 10.0, 2) for at in starts[1:]}) > 5  # really random


async def test_a_run_still_going_when_the_next_is_due_skips_that_one() -> None:
    clock, log = Clock(), list[tuple[str, float]]()
    hold = asyncio.Event()
    cadence = Cadence("packages", 2.0, clock=clock)
    cadence.add("slow", recorder(log, clock, "slow", hold), first_in=0.0)
    cadence.add("fast", recorder(log, clock, "fast"), first_in=0.0)
    for _ in range(3):
        cadence.start_due()
        await settle()
        clock.now += 2.0
    assert [n for n, _ in log].count("slow") == 1
    assert [n for n, _ in log].count("fast") == 3  # one hung VM never delays another
    assert cadence.overruns == 2
    hold.set()
    await settle()
    cadence.start_due()
    await settle()
    assert [n for n, _ in log].count("slow") == 2


async def test_missed_slots_coalesce_into_one_run() -> None:
    clock, log = Clock(), list[tuple[str, float]]()
    cadence = Cadence("memory", 1.0, clock=clock)
    cadence.add("a", recorder(log, clock, "a"), first_in=0.5)
    clock.now += 5.2  # the loop stalled over five slots
    assert cadence.start_due() == 1
    await settle()
    assert cadence.start_due() == 0
    clock.now = 105.5  # back on the original schedule
    assert cadence.start_due() == 1


async def test_removed_members_stop_and_a_replaced_member_runs_its_new_job() -> None:
    clock, log = Clock(), list[tuple[str, float]]()
    cadence = Cadence("heartbeat", 1.0, clock=clock)
    cadence.add("a", recorder(log, clock, "a"), first_in=0.0)
    cadence.add("b", recorder(log, clock, "b-old"), first_in=0.0)
    cadence.add("b", recorder(log, clock, "b-new"), first_in=0.0)
    cadence.remove("a")
    assert "a" not in cadence and len(cadence) == 1
    for _ in range(3):
        cadence.start_due()
        await settle()
        clock.now += 1.0
    assert [n for n, _ in log] == ["b-new"] * 3
    for i in range(500):  # many VMs come and go: the heap does not keep their entries
        cadence.add(f"x{i}", recorder(log, clock, "x"), first_in=10.0)
        cadence.remove(f"x{i}")
    cadence.start_due()
    assert len(cadence._heap) <= 2 * len(cadence) + 64


async def test_a_retry_runs_once_soon_and_leaves_the_regular_slots_alone() -> None:
    clock, log = Clock(), list[tuple[str, float]]()
    cadence = Cadence("packages", 3600.0, clock=clock)
    cadence.add("a", recorder(log, clock, "a"), first_in=0.0)
    cadence.start_due()
    await settle()
    cadence.retry("a", 15.0)
    cadence.retry("gone", 15.0)  # not a member: nothing scheduled
    for _ in range(4 * 3700):
        clock.now += 0.25
        cadence.start_due()
        await settle()
    assert [at - 100.0 for _, at in log] == pytest.approx([0.0, 15.0, 3600.0], abs=0.3)
    cadence.retry("a", 15.0)
    cadence.remove("a")  # a retry of a removed member does not run
    clock.now += 20.0
    cadence.start_due()
    await settle()
    assert len(log) == 3


async def test_one_retry_is_pending_at_a_time_and_a_regular_run_overtakes_it() -> None:
    clock, log = Clock(), list[tuple[str, float]]()
    cadence = Cadence("packages", 60.0, clock=clock)
    cadence.add("a", recorder(log, clock, "a"), first_in=0.0)
    cadence.start_due()
    await settle()
    for _ in range(5):  # a deferred run asked again and again: still one retry
        cadence.retry("a", 15.0)
    clock.now += 15.0
    cadence.start_due()
    await settle()
    cadence.retry("a", 50.0)  # due after the next regular run (at 60 s): overtaken by it
    for _ in range(4 * 60):
        clock.now += 0.25
        cadence.start_due()
        await settle()
    assert [at - 100.0 for _, at in log] == pytest.approx([0.0, 15.0, 60.0], abs=0.3)
    live = [e for e in cadence._heap if cadence._valid(*e[1:])]
    assert len(live) == 1  # the next regular slot only


async def test_stop_cancels_runs_in_progress() -> None:
    clock, log = Clock(), list[tuple[str, float]]()
    hold = asyncio.Event()
    cadence = Cadence("heartbeat", 1.0, clock=clock)
    cadence.add("a", recorder(log, clock, "a", hold), first_in=0.0)
    cadence.start_due()
    await settle()
    task = cadence._running["a"]
    await cadence.stop()
    assert task.cancelled() and len(cadence) == 0


async def test_a_job_that_runs_in_place_needs_no_task_and_its_failure_stays_its_own(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, log = Clock(), list[tuple[str, float]]()
    cadence = Cadence("heartbeat", 5.0, clock=clock)

    def in_place() -> None:
        log.append(("a", clock.now))

    def failing() -> None:
        raise RuntimeError("driver bug")

    cadence.add("a", in_place, first_in=0.0)
    cadence.add("b", failing, first_in=0.0)
    cadence.add("c", recorder(log, clock, "c"), first_in=0.0)
    assert cadence.start_due() == 2  # a in place, c as a task; b failed
    assert list(cadence._running) == ["c"]
    await settle()
    assert sorted(name for name, _ in log) == ["a", "c"]
    assert "heartbeat run of b failed" in caplog.text
    clock.now += 5.0
    cadence.start_due()  # every member stays scheduled, the failing one too
    await settle()
    assert [name for name, _ in log].count("a") == 2


def test_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        Cadence("x", 0.0)


class _IdleDriver:
    async def heartbeat(self) -> None:
        return None

    async def poll(self, group: object, known_os: object) -> dict[object, object]:
        return {}

    async def close(self) -> None:
        return None


async def test_a_fleet_starting_at_once_spreads_its_first_runs_one_new_vm_does_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from collector import service as service_module
    from collector.config import from_dict
    from collector.facts import PollGroup
    from collector.service import STARTUP_SPREAD_PER_VM, Service
    from collector.targets import Target

    targets = {
        f"vm{i}": Target(f"vm{i}", "qga", f"/run/vm{i}.qga", "persistent", "h") for i in range(2000)
    }
    monkeypatch.setattr(service_module, "discover", lambda config: dict(targets))
    monkeypatch.setattr(service_module, "socket_exists", lambda path: True)
    config = from_dict({"storage": {"url": f"sqlite:///{tmp_path / 'gw.db'}"}})
    service = Service(config, store=None, driver_factory=lambda *a: _IdleDriver())  # type: ignore[arg-type]
    heartbeat = service.cadences[PollGroup.HEARTBEAT]
    started = heartbeat.clock()
    service.scan()
    scanning = heartbeat.clock() - started  # phases count from when each VM was added
    first = [heartbeat._base[name] - started for name in targets]
    spread = 2000 * STARTUP_SPREAD_PER_VM  # 24 s, longer than the 5 s heartbeat interval
    assert max(first) <= spread + scanning and max(first) > spread * 0.9
    assert sum(f > 5.0 for f in first) > 1000  # not all channels opened in one interval
    targets["late"] = Target("late", "qga", "/run/late.qga", "persistent", "h")
    service.scan()  # one VM appears later: polled within one heartbeat interval
    assert heartbeat._base["late"] - heartbeat.clock() <= 5.0
