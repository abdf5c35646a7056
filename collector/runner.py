"""One VM's polling: turns driver results into state, liveness transitions and store records.

Protocol-agnostic: it sees a `Driver`. Logging follows the rule that a flapping or broken
agent is logged when its state changes, never on every poll.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any, cast

from collector.config import PollingConfig
from collector.driver import Driver, DriverError, KeepsSets, SendsHeartbeat
from collector.facts import (
    GROUP_KINDS,
    FactKind,
    FactSet,
    Filesystem,
    Memory,
    NetInterface,
    OsInfo,
    Outcome,
    PollError,
    PollGroup,
    Unavailable,
)
from collector.liveness import State, Transition
from collector.ranges import SetDelta, delta, split
from collector.state import FleetState, VmState
from storage.records import (
    HeartbeatSeen,
    InventoryObserved,
    KindStatus,
    KindSucceeded,
    LivenessChanged,
    Record,
    Sample,
    SamplesObserved,
)

log = logging.getLogger(__name__)

Emit = Callable[[Record], None]
#: The DriverError reason by which a driver says its agent is gone for good (not down).
GONE_REASON = "gone"
#: The store's last-seen heartbeat and per-kind last success move at most this often per VM
#: (the first answer after a start or transition is stored at once): liveness transitions are
#: stored exactly, `/metrics` shows the exact times, and 10,000 VMs at a 5 s heartbeat would
#: otherwise cost the database 2,000 row updates a second for a timestamp (and their kinds'
#: successes over a thousand more).
STORE_TIMESTAMPS_EVERY = 300.0


def samples_of(facts: FactSet) -> tuple[Sample, ...]:
    """The measurements of a set, which go to the samples table rather than validity rows."""
    out: list[Sample] = []
    for item in facts.items:
        if isinstance(item, Memory):
            for metric, value in (
                ("memory_total_bytes", item.total_bytes),
                ("memory_available_bytes", item.available_bytes),
                ("memory_free_bytes", item.free_bytes),
                ("swap_free_bytes", item.swap_free_bytes),
            ):
                if value is not None:
                    out.append(Sample(metric, "", float(value)))
        elif isinstance(item, Filesystem):
            if item.used_bytes is not None:
                out.append(Sample("filesystem_used_bytes", item.mountpoint, float(item.used_bytes)))
            if item.size_bytes is not None:
                out.append(Sample("filesystem_size_bytes", item.mountpoint, float(item.size_bytes)))
        elif isinstance(item, NetInterface):
            if item.rx_bytes is not None:
                out.append(Sample("network_receive_bytes", item.name, float(item.rx_bytes)))
            if item.tx_bytes is not None:
                out.append(Sample("network_transmit_bytes", item.name, float(item.tx_bytes)))
    return tuple(out)


class TargetRunner:
    """Runs heartbeats and poll groups for one VM; called by the scheduler's jobs."""

    def __init__(
        self,
        vm: VmState,
        *,
        driver: Driver,
        fleet: FleetState,
        emit: Emit,
        polling: PollingConfig,
        clock: Callable[[], float] = time.time,
        store_backlogged: Callable[[], bool] = lambda: False,
    ) -> None:
        self.vm = vm
        self.driver = driver
        self.fleet = fleet
        self.emit = emit
        self.polling = polling
        self.clock = clock
        #: True while the database writer is far behind: package polls wait (they are the
        #: big sets; fetching more would only grow the queue), retried at the next cadence.
        self.store_backlogged = store_backlogged
        #: The driver said the agent is gone (ovirt `uninstalled`): the VM is `gone`, not
        #: down, but heartbeats continue so that a reinstalled agent brings it back.
        self.agent_gone = False
        self._stored_heartbeat: float | None = None
        self._stored_success: dict[FactKind, float] = {}
        #: Status changes the store dropped, by kind: the next poll sends them again.
        self._status_unstored: dict[FactKind, KindStatus] = {}
        #: When the heartbeat sent without a task went out (monotonic); None once answered.
        self._beat_sent: float | None = None

    @property
    def name(self) -> str:
        return self.vm.target.name

    def _transition(self, transition: Transition | None) -> None:
        if transition is None:
            return
        last = self.vm.liveness.last_heartbeat
        stored = self._stored_heartbeat
        if (
            transition.new is not State.UP
            and last is not None
            and (stored is None or last > stored)
        ):
            # The exact last answer goes to the store before the transition: alerts quote it.
            self._stored_heartbeat = last
            self.emit(HeartbeatSeen(self.vm.ref, last))
        level = logging.WARNING if transition.new in (State.LATE, State.DOWN) else logging.INFO
        log.log(
            level,
            "vm %s: agent %s -> %s (%s)",
            self.name,
            transition.old,
            transition.new,
            transition.reason,
        )
        self.emit(
            LivenessChanged(
                self.vm.ref,
                transition.at,
                transition.old.value,
                transition.new.value,
                transition.reason[:500],
            )
        )

    async def heartbeat(self) -> None:
        if self.vm.liveness.state is State.GONE and not self.agent_gone:
            return
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.polling.heartbeat_interval):
                await self.driver.heartbeat()
        except DriverError as exc:
            self._heartbeat_failed(exc)
        except TimeoutError:
            self._missed("timeout")
        else:
            self._heartbeat_answered()
        finally:
            self.fleet.observe_duration(PollGroup.HEARTBEAT, time.monotonic() - started)

    def send_heartbeat(self) -> Coroutine[Any, Any, None] | None:
        """The heartbeat cadence's run for a `SendsHeartbeat` driver: the beat is sent now and
        its answer recorded by callback (None: no task); `heartbeat()` as a task when the
        driver cannot (its channel is not ready).

        A beat still unanswered when the next is due had its interval, the timeout of
        `heartbeat()`: it is abandoned as missed before the next is sent.
        """
        # The service chose this job because the driver is one (an isinstance check against
        # a runtime protocol here would cost more than the rest of the beat).
        driver = cast("SendsHeartbeat", self.driver)
        if self._beat_sent is not None:
            driver.abandon_heartbeat()  # reports the timeout through _beat_done
            self._beat_sent = None  # even if the driver had nothing to abandon
        if self.vm.liveness.state is State.GONE and not self.agent_gone:
            return None
        self._beat_sent = time.monotonic()
        if driver.send_heartbeat(self._beat_done):
            return None
        self._beat_sent = None
        return self.heartbeat()

    def _beat_done(self, error: DriverError | None) -> None:
        sent, self._beat_sent = self._beat_sent, None
        if sent is None:
            return
        try:
            if error is None:
                self._heartbeat_answered()
            else:
                self._heartbeat_failed(error)
        finally:
            self.fleet.observe_duration(PollGroup.HEARTBEAT, time.monotonic() - sent)

    def check_pushed_heartbeat(self, check: Callable[[], None]) -> None:
        """`heartbeat()` for a `PushedHeartbeat` driver: `check` reads state, so it runs in
        place, with no task and no timeout."""
        if self.vm.liveness.state is State.GONE and not self.agent_gone:
            return
        started = time.monotonic()
        try:
            check()
        except DriverError as exc:
            self._heartbeat_failed(exc)
        else:
            self._heartbeat_answered()
        finally:
            self.fleet.observe_duration(PollGroup.HEARTBEAT, time.monotonic() - started)

    def _heartbeat_failed(self, exc: DriverError) -> None:
        if exc.reason == GONE_REASON:
            self.agent_gone = True
            self._transition(self.vm.liveness.vanished(self.clock(), exc.detail or "gone"))
        elif not self.agent_gone:
            self._missed(exc.reason)

    def _heartbeat_answered(self) -> None:
        now = self.clock()
        if self.agent_gone:
            self.agent_gone = False
            self._transition(self.vm.liveness.reappeared(now))
        transition = self.vm.liveness.answered(now)
        self._transition(transition)
        stored = self._stored_heartbeat
        if transition is not None or stored is None or now - stored >= STORE_TIMESTAMPS_EVERY:
            self._stored_heartbeat = now
            self.emit(HeartbeatSeen(self.vm.ref, now))

    def _missed(self, reason: str) -> None:
        self.fleet.count_error("heartbeat", reason)
        self._transition(self.vm.liveness.missed_heartbeat(self.clock(), reason))

    def _deferred(self, group: PollGroup) -> bool:
        if group is PollGroup.PACKAGES and self.store_backlogged():
            self.fleet.polls_deferred[group.value] += 1
            return True
        return False

    def poll_pushed(
        self,
        group: PollGroup,
        latest: Callable[[PollGroup, OsInfo | None], Mapping[FactKind, Outcome]],
    ) -> bool:
        """`poll()` for a `PushedFacts` driver: `latest` reads state, so it runs in place,
        with no task and no timeout."""
        if self.vm.liveness.state is State.GONE:
            return True
        if self._deferred(group):
            return False
        started = time.monotonic()
        try:
            outcomes = latest(group, self.vm.os)
        except DriverError as exc:
            outcomes = {kind: PollError(exc.reason, exc.detail) for kind in GROUP_KINDS[group]}
        finally:
            self.fleet.observe_duration(group, time.monotonic() - started)
        self.record(outcomes.items())
        return True

    async def poll(self, group: PollGroup) -> bool:
        """One round of `group`; False when it was deferred (the caller retries it soon)."""
        if self.vm.liveness.state is State.GONE:
            return True
        if self._deferred(group):
            return False
        kinds = GROUP_KINDS[group]
        started = time.monotonic()
        try:
            # Every command has its own timeout in the driver; this bounds a whole round so
            # a hung VM releases its job before the next cadence.
            budget = max(self.polling.command_timeout * 4, 1.0) + self.polling.command_timeout * 8
            async with asyncio.timeout(budget):
                outcomes = await self.driver.poll(group, self.vm.os)
        except DriverError as exc:
            outcomes = {kind: PollError(exc.reason, exc.detail) for kind in kinds}
        except TimeoutError:
            outcomes = {kind: PollError("timeout", "poll round over budget") for kind in kinds}
        finally:
            self.fleet.observe_duration(group, time.monotonic() - started)
        self.record(outcomes.items())
        return True

    def record(self, outcomes: Iterable[tuple[FactKind, Outcome]]) -> None:
        """Apply one poll's outcomes: state, status changes, and only changed sets.

        Status changes are logged once per poll and (status, reason), naming every kind it
        hit: an agent that goes away is one line, not one line per fact kind.
        """
        now = self.clock()
        changes: dict[tuple[str, str], list[str]] = {}
        details: dict[tuple[str, str], str] = {}
        for kind, outcome in outcomes:
            state = self.vm.kind(kind)
            if isinstance(outcome, FactSet):
                known, split_at = state.ranges, None
                if kind is FactKind.PACKAGES and not outcome.released:
                    # Formats the items once for the set's digest and its range digests.
                    split_at = split(outcome, None if known is None else known.bounds)
                    state.ranges = split_at[0]
                digest = outcome.digest()
                if outcome.released and digest != state.digest and state.digest is not None:
                    # Cannot happen: a released set is one this runner recorded last (or,
                    # digest None, one the store dropped, until the driver builds it afresh).
                    self.fleet.count_error(kind.value, "internal")
                    details.setdefault(("error", "internal"), "released set changed")
                    self._set_status(kind, "error", "internal", now, changes=changes)
                    continue
                self._set_status(kind, "ok", "", now, changes=changes)
                self.vm.succeeded(kind, now)
                stored = self._stored_success.get(kind)
                if stored is None or now - stored >= STORE_TIMESTAMPS_EVERY:
                    self._stored_success[kind] = now
                    self.emit(KindSucceeded(self.vm.ref, now, kind))
                if outcome.released:
                    continue  # recorded and remembered when it was first seen
                # Drivers keep a package set for reuse: leave only its digest there; the
                # store record and the counts get a copy sharing the items.
                facts = outcome.release() if kind is FactKind.PACKAGES else outcome
                if digest != state.digest:
                    change: SetDelta | None = None
                    if split_at is not None and known is not None and known.digest == state.digest:
                        change = delta(known, *split_at)
                    state.digest = digest
                    self.emit(InventoryObserved(self.vm.ref, now, facts, change))
                samples = samples_of(facts)
                if samples:
                    self.emit(SamplesObserved(self.vm.ref, now, samples))
                self.vm.remember(facts)
            elif isinstance(outcome, Unavailable):
                self._set_status(kind, "unavailable", outcome.reason, now, changes=changes)
            else:
                self.fleet.count_error(kind.value, outcome.reason)
                details.setdefault(("error", outcome.reason), outcome.detail)
                self._set_status(kind, "error", outcome.reason, now, changes=changes)
        for (status, reason), kinds in changes.items():
            what = ", ".join(kinds)
            if status == "ok":
                log.info("vm %s: %s available again", self.name, what)
            elif status == "unavailable":
                log.info("vm %s: %s unavailable (%s)", self.name, what, reason)
            else:
                detail = details.get((status, reason), "")[:200]
                log.warning("vm %s: %s poll failed: %s %s", self.name, what, reason, detail)

    def unstored(self, record: Record) -> None:
        """The store dropped `record` (its queue was full): send what it said again.

        Sets and statuses are sent only when they change, so a dropped one would otherwise
        be missing from the history until the guest changed again. A set is sent again by
        the next poll that gets it (a driver that reuses an unchanged set builds it afresh),
        unless a newer one has been sent since; a status with the next poll of its kind.
        """
        if isinstance(record, InventoryObserved):
            kind = record.facts.kind
            state = self.vm.kinds.get(kind)
            if state is None or state.digest != record.facts.digest():
                return  # a newer set was sent after it: the store gets that one
            state.digest = None
            if isinstance(self.driver, KeepsSets):
                self.driver.forget(kind)
        elif isinstance(record, KindStatus):
            state = self.vm.kinds.get(record.kind)
            if state is not None and (state.status, state.reason) == (record.status, record.reason):
                self._status_unstored[record.kind] = record

    def _set_status(
        self,
        kind: FactKind,
        status: str,
        reason: str,
        now: float,
        *,
        changes: dict[tuple[str, str], list[str]],
    ) -> None:
        state = self.vm.kind(kind)
        if state.status == status and state.reason == reason:
            if (dropped := self._status_unstored.pop(kind, None)) is not None:
                self.emit(dropped)  # the store dropped the change: send it again, as it was
            return
        if status != "ok" or state.status not in ("pending", "ok"):
            changes.setdefault((status, reason), []).append(kind.value)
        self._status_unstored.pop(kind, None)
        self.vm.set_status(kind, status, reason)
        self._stored_success.pop(kind, None)  # the next success is stored at once
        self.emit(KindStatus(self.vm.ref, now, kind, status, reason))
