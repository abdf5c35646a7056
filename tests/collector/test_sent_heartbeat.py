"""TargetRunner.send_heartbeat: the heartbeat of a `SendsHeartbeat` driver, without a task.

The answer comes by callback; a beat unanswered when the next is due is missed (its
timeout), as `heartbeat()` would have timed it out; a driver that cannot send gets the
task's path.
"""

from __future__ import annotations

from collector.driver import DriverError, HeartbeatDone, SendsHeartbeat
from collector.facts import PollGroup
from collector.liveness import State
from storage.records import HeartbeatSeen, LivenessChanged

from .test_package_release import runner


class CallbackDriver:
    """Sends when `ready`; the test answers through `answer()`."""

    def __init__(self) -> None:
        self.ready = True
        self.sent = 0
        self.abandoned = 0
        self.heartbeats = 0  # the task's path
        self._done: HeartbeatDone | None = None

    def send_heartbeat(self, done: HeartbeatDone) -> bool:
        if not self.ready:
            return False
        self.sent += 1
        self._done = done
        return True

    def abandon_heartbeat(self) -> None:
        self.abandoned += 1
        self.answer(DriverError("timeout", "no reply to guest-ping in time"))

    def answer(self, error: DriverError | None = None) -> None:
        done, self._done = self._done, None
        if done is not None:
            done(error)

    async def heartbeat(self) -> None:
        self.heartbeats += 1


def test_an_answered_beat_is_recorded_without_a_task() -> None:
    driver = CallbackDriver()
    assert isinstance(driver, SendsHeartbeat)
    run, records = runner(driver)
    assert run.send_heartbeat() is None
    assert run.vm.liveness.state is State.UNKNOWN  # sent, not answered yet
    beat = driver._done
    assert beat is not None
    driver.answer()
    assert run.vm.liveness.state is State.UP
    assert [type(r) for r in records] == [LivenessChanged, HeartbeatSeen]
    assert sum(run.fleet.poll_durations[PollGroup.HEARTBEAT].counts) == 1
    beat(None)  # a second callback for the same beat changes nothing
    beat(DriverError("timeout"))
    assert sum(run.fleet.poll_durations[PollGroup.HEARTBEAT].counts) == 1
    assert run.vm.liveness.missed == 0


def test_a_beat_unanswered_when_the_next_is_due_is_missed() -> None:
    driver = CallbackDriver()
    run, _ = runner(driver)
    run.send_heartbeat()
    driver.answer()
    for beat in range(1, 3):
        assert run.send_heartbeat() is None  # the one before was answered, or abandoned
        assert run.vm.liveness.missed == beat - 1
    assert run.send_heartbeat() is None
    assert driver.abandoned == 2
    assert run.vm.liveness.missed == 2
    assert run.vm.liveness.state is State.LATE  # late_after = 2
    assert run.fleet.poll_errors[("heartbeat", "timeout")] == 2
    driver.answer()
    assert run.vm.liveness.state is State.UP


def test_a_failed_beat_counts_its_reason() -> None:
    driver = CallbackDriver()
    run, _ = runner(driver)
    run.send_heartbeat()
    driver.answer(DriverError("disconnect", "agent closed the channel"))
    assert run.vm.liveness.missed == 1
    assert run.fleet.poll_errors[("heartbeat", "disconnect")] == 1
    assert run.send_heartbeat() is None
    assert driver.abandoned == 0  # that beat had its answer


async def test_a_driver_that_cannot_send_gets_the_tasks_path() -> None:
    driver = CallbackDriver()
    driver.ready = False
    run, _ = runner(driver)
    beat = run.send_heartbeat()
    assert beat is not None
    await beat
    assert driver.heartbeats == 1
    assert run.vm.liveness.state is State.UP
    driver.ready = True
    assert run.send_heartbeat() is None  # nothing left over from the task's beat
    assert driver.abandoned == 0


def test_a_gone_vm_sends_nothing() -> None:
    driver = CallbackDriver()
    run, _ = runner(driver)
    run.vm.liveness.vanished(0.0, "removed")
    assert run.send_heartbeat() is None
    assert driver.sent == 0
