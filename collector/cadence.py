"""One poll cadence for the whole fleet: a due-time heap ticked by one APScheduler job.

APScheduler 3 with one job per VM and cadence costs a few hundred microseconds of bookkeeping
per run (trigger arithmetic on aware datetimes, job store updates, events): 10,000 VMs with a
5 s heartbeat are 2,000 runs a second, most of a core before any agent is asked anything. So
APScheduler fires one job per cadence, a few times a second, and that job starts the runs
that are due. The semantics of the old per-VM jobs stay: each VM has its own phase in the
interval (spreading a fleet), a random delay of up to `jitter` × interval per run, at most one
run per VM at a time (a run still going when the next is due skips that one, like
`max_instances=1`), and missed slots coalesce into one run instead of a burst.
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import logging
import random
import time
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)

#: A member's run: a coroutine to run as a task, or None when the job ran in place (a pushed
#: heartbeat checked: no task for work that never waits).
Job = Callable[[], Coroutine[Any, Any, None] | None]


class Cadence:
    """Due times of every member's runs at one interval; `tick()` starts those that are due."""

    def __init__(
        self,
        name: str,
        interval: float,
        *,
        jitter: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError("a cadence's interval is positive")
        self.name = name
        self.interval = interval
        self.jitter = jitter * interval
        self.clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - scheduling jitter only
        #: (due, sequence, member, generation, is_retry); entries of removed members are
        #: skipped, and a retry entry runs once without moving the member's slots.
        self._heap: list[tuple[float, int, str, int, bool]] = []
        self._members: dict[str, tuple[Job, int]] = {}
        self._base: dict[str, float] = {}  # each member's slot before jitter: no drift
        self._running: dict[str, asyncio.Task[None]] = {}
        #: member -> sequence of its one pending retry entry (a regular run cancels it).
        self._retries: dict[str, int] = {}
        self._sequence = 0
        #: Runs skipped because the member's previous run was still going.
        self.overruns = 0

    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, member: object) -> bool:
        return member in self._members

    @property
    def tick_seconds(self) -> float:
        """How often `tick()` should run: a tenth of the interval, at most 0.25 s, up to 5 s;
        a twentieth of a longer one, at most 1 s.

        A run starts up to one tick late: 0.25 s for a 5 s heartbeat, 1 s for polls minutes
        apart. Each tick is an APScheduler job run (a few hundred µs of its bookkeeping), so
        the inventory cadences tick once a second rather than four times.
        """
        if self.interval <= 5.0:
            return min(0.25, self.interval / 10)
        return min(1.0, self.interval / 20)

    def add(self, member: str, job: Job, *, first_in: float) -> None:
        """Run `job` `first_in` seconds from now, then every interval (replaces `member`)."""
        self._sequence += 1
        self._members[member] = (job, self._sequence)
        due = self.clock() + max(0.0, first_in)
        self._base[member] = due
        heapq.heappush(self._heap, (due, self._sequence, member, self._sequence, False))

    def retry(self, member: str, after: float) -> None:
        """One extra run of `member` `after` seconds from now; its regular slots stay.

        For a run that chose not to do its work yet (packages waiting for the database
        writer): with a one-hour interval, waiting for the next slot would be an hour.
        """
        entry = self._members.get(member)
        if entry is None or member in self._retries:
            return  # not a member, or a retry is already pending
        self._sequence += 1
        self._retries[member] = self._sequence
        due = self.clock() + max(0.0, after)
        heapq.heappush(self._heap, (due, self._sequence, member, entry[1], True))

    def remove(self, member: str) -> None:
        """No further runs of `member`; one in progress finishes (its channel closes under it)."""
        self._members.pop(member, None)
        self._base.pop(member, None)
        self._retries.pop(member, None)

    async def tick(self) -> None:
        """Start every due run. A coroutine, so APScheduler runs it on the event loop."""
        self.start_due()

    def start_due(self) -> int:
        now = self.clock()
        heap = self._heap
        started = 0
        while heap and heap[0][0] <= now:
            _, sequence, member, generation, is_retry = heapq.heappop(heap)
            if not self._valid(sequence, member, generation, is_retry):
                continue  # removed, replaced or (a retry) overtaken since it was pushed
            job = self._members[member][0]
            self._retries.pop(member, None)  # a regular run does what a retry would do
            if not is_retry:
                self._schedule_next(member, generation, now)
            if member in self._running:
                self.overruns += 1
                continue
            try:
                run = job()
            except Exception:
                log.exception("%s run of %s failed", self.name, member)
                continue
            started += 1
            if run is None:
                continue
            task = asyncio.get_running_loop().create_task(run)
            self._running[member] = task
            task.add_done_callback(functools.partial(self._finished, member))
        if len(heap) > 2 * len(self._members) + 64:  # live entries: one slot, one retry each
            self._compact()
        return started

    def _valid(self, sequence: int, member: str, generation: int, is_retry: bool) -> bool:
        entry = self._members.get(member)
        if entry is None or entry[1] != generation:
            return False
        return not is_retry or self._retries.get(member) == sequence

    def _schedule_next(self, member: str, generation: int, now: float) -> None:
        base = self._base[member] + self.interval
        if base <= now:  # missed slots (a stalled loop): one run now, then on schedule
            base += ((now - base) // self.interval + 1) * self.interval
        self._base[member] = base
        due = base + (self._rng.uniform(0.0, self.jitter) if self.jitter else 0.0)
        self._sequence += 1
        heapq.heappush(self._heap, (due, self._sequence, member, generation, False))

    def _finished(self, member: str, task: asyncio.Task[None]) -> None:
        if self._running.get(member) is task:
            del self._running[member]
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("%s run of %s failed", self.name, member, exc_info=exc)

    def _compact(self) -> None:
        """Drop entries of removed members (many VMs came and went) and overtaken retries."""
        self._heap = [e for e in self._heap if self._valid(e[1], e[2], e[3], e[4])]
        heapq.heapify(self._heap)

    async def stop(self) -> None:
        """Cancel the runs in progress and wait for them to unwind."""
        self._members.clear()
        self._heap.clear()
        self._retries.clear()
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
