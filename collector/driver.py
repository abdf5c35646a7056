"""The one small interface between the scheduler and a protocol driver.

A driver owns the channel to one VM's agent and speaks its protocol; the runner above it owns
timing, liveness, state and records. A driver's methods raise `DriverError` (with a short,
bounded `reason` for the `guestwatch_poll_errors_total` label) when the agent fails; a kind
the agent cannot give comes back as `Unavailable`, never as an exception.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol, runtime_checkable

from collector.facts import FactKind, OsInfo, Outcome, PollGroup


class DriverError(Exception):
    """A failed heartbeat or poll; `reason` is a label value from a small fixed set."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class Driver(Protocol):
    async def heartbeat(self) -> None:
        """Prove the agent answers; raise DriverError otherwise."""

    async def poll(self, group: PollGroup, known_os: OsInfo | None) -> Mapping[FactKind, Outcome]:
        """Collect every kind of `group`; per-kind failures are PollError outcomes."""

    async def close(self) -> None:
        """Release the channel; idempotent."""


@runtime_checkable
class PushedHeartbeat(Protocol):
    """A driver whose agent pushes its heartbeats (ovirt) or has none (spice): checking
    liveness reads state and never waits, so the runner checks it in place, without a task
    and a timeout per VM and beat (1,000 a second for 5,000 such VMs)."""

    def check_heartbeat(self) -> None:
        """What `heartbeat()` does, synchronously: raise DriverError when not alive."""


@runtime_checkable
class PushedFacts(Protocol):
    """A driver whose poll reads what its agent pushed (ovirt) or its own state (spice): it
    never waits, so the runner polls it in place, without a task and a timeout per VM and
    round (400 a second for 10,000 such VMs)."""

    def latest(self, group: PollGroup, known_os: OsInfo | None) -> Mapping[FactKind, Outcome]:
        """What `poll()` returns, synchronously."""


#: Called with a heartbeat's outcome: None when the agent answered.
HeartbeatDone = Callable[["DriverError | None"], None]


@runtime_checkable
class SendsHeartbeat(Protocol):
    """A driver that can send a heartbeat at once and report the answer by callback (qga on
    a ready channel): no task, future or timer per beat (1,000 a second for 5,000 VMs)."""

    def send_heartbeat(self, done: HeartbeatDone) -> bool:
        """Send a heartbeat and call `done` when it is answered or fails; False (nothing
        sent, `done` never called) when the channel is not ready: use `heartbeat()`."""

    def abandon_heartbeat(self) -> None:
        """The heartbeat sent last got no answer in time: `done` gets a timeout now."""


@runtime_checkable
class KeepsSets(Protocol):
    """A driver that hands back the set it built last while its agent's answer is unchanged
    (a package list: parsed once, then only its digest kept)."""

    def forget(self, kind: FactKind) -> None:
        """The store dropped the last set of `kind`: build the next one afresh."""


#: Called by a driver for every fault it absorbs (timeout, garbage, oversize, ...), so the
#: runner can count it even when the driver recovered by itself.
FaultHook = Callable[[str], None]
