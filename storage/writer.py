"""The one writer task: batches records so that polling never waits on the database.

Pollers call `submit()`, which only appends to a bounded in-memory queue. One asyncio task
takes up to `max_batch` records (or whatever arrived within `max_delay`) and hands them to
`Store.write` in a thread. A failed write keeps its records and is retried with capped
exponential backoff; while it is stuck, the queue absorbs new records up to `max_queue` and then
drops (counted), so memory stays bounded and the event loop never blocks.

Heartbeats and kind successes only ever move a timestamp forward, so a newer one replaces the
queued one for the same VM (and kind) instead of taking a place in the queue: during a database
outage they cannot crowd inventory out of the bounded queue.

Records weigh what they write: an inventory set counts one per item. A batch stops at
`max_batch_items` (a 10,000-VM first start would otherwise put millions of package rows in one
transaction), and `backlog_items` tells the service how far the database is behind, so that it
can put off fetching more package lists until the writer catches up (memory stays bounded and
nothing is dropped).

A record the database rejects by its content (not because the database is unreachable) would
block the queue forever, so a failing batch is halved on each failure to isolate it, and a single
record that still fails `poison_after` times with a non-transient error is dropped and counted.

A record dropped because the queue was full is handed to `on_drop`: the collector sends an
inventory set or a status only when it changed, so a dropped one would stay missing from the
history until the guest changed again; the service has the VM's runner send it again instead.
A poisoned record is not handed back: the database rejected its content, and would again.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Final, Protocol

from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError

from storage.records import HeartbeatSeen, InventoryObserved, KindSucceeded, Record

log = logging.getLogger(__name__)

#: Errors that say "the database is unavailable", not "this data is bad": retried forever.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError,
    InterfaceError,
    DisconnectionError,
    ConnectionError,
    TimeoutError,
)

_DROP_LOG_INTERVAL = 10.0


class _Slot:
    """A queued record; `count` is how many submitted records it stands for (coalescing)."""

    __slots__ = ("count", "key", "record", "weight")

    def __init__(self, record: Record, key: tuple[str, ...] | None) -> None:
        self.record = record
        self.key = key
        self.count = 1
        self.weight = _weight(record)


def _weight(record: Record) -> int:
    """Rows a record may write: an inventory set's items, else one."""
    if isinstance(record, InventoryObserved):
        return 1 + len(record.facts.items)
    return 1


def _coalesce_key(record: Record) -> tuple[str, ...] | None:
    if isinstance(record, HeartbeatSeen):
        return ("heartbeat", record.vm.key)
    if isinstance(record, KindSucceeded):
        return ("success", record.vm.key, str(record.kind))
    return None


#: Rows per batch: a first inventory costs the store about 1.2 KiB of transient memory per
#: row, so 200,000 rows raised peak RSS by 238 MiB and 50,000 by 61 MiB, for the same CPU
#: (600,000 package rows either way, SQLite; `bench/batch_memory.py`).
MAX_BATCH_ITEMS: Final = 50_000


class BatchStore(Protocol):
    """What the writer needs of a store (`storage.repository.Store` is one)."""

    def write(self, records: Sequence[Record], /) -> object: ...


class Writer:
    """Batches submitted records into `store.write` calls from one asyncio task."""

    def __init__(
        self,
        store: BatchStore,
        *,
        max_batch: int = 5000,
        max_batch_items: int = MAX_BATCH_ITEMS,
        max_delay: float = 0.5,
        max_queue: int = 200_000,
        retry_initial: float = 0.1,
        retry_max: float = 30.0,
        poison_after: int = 5,
        on_drop: Callable[[Record], None] | None = None,
    ) -> None:
        if max_batch < 1 or max_queue < 1 or max_batch_items < 1:
            raise ValueError("max_batch, max_batch_items and max_queue must be at least 1")
        self._store = store
        self._max_batch = max_batch
        self._max_batch_items = max_batch_items
        self._max_delay = max_delay
        self._max_queue = max_queue
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._poison_after = poison_after
        self._on_drop = on_drop

        self._pending: deque[_Slot] = deque()
        self._coalescing: dict[tuple[str, ...], _Slot] = {}  # queued, not yet being written
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._accepted = 0  # records ever accepted by submit()
        self._done = 0  # records taken off the queue (written or dropped as poison)
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._last_drop_log = float("-inf")
        self._drops_unlogged = 0
        self._backlog_items = 0  # sum of the pending slots' weights

        self.written = 0
        self.coalesced = 0
        self.dropped = 0
        self.poisoned = 0
        self.failures = 0
        self.batches = 0
        self.last_write_seconds = 0.0

    # ------------------------------------------------------------------ public

    @property
    def queue_depth(self) -> int:
        return len(self._pending)

    @property
    def max_queue(self) -> int:
        return self._max_queue

    @property
    def backlog_items(self) -> int:
        """Rows waiting to be written (an inventory set counts its items)."""
        return self._backlog_items

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def submit(self, record: Record) -> bool:
        """Queue a record without waiting; False (counted in `dropped`, handed to `on_drop`) if
        the queue is full.

        Call it from the event loop's thread (it is not thread-safe).
        """
        if self._closing:
            self._drop("writer closed")
            return False
        key = _coalesce_key(record)
        if key is not None and (queued := self._coalescing.get(key)) is not None:
            if record.at >= queued.record.at:
                queued.record = record
            queued.count += 1
            self._accepted += 1
            self.coalesced += 1
            return True
        if len(self._pending) >= self._max_queue:
            self._drop("queue full")
            self._dropped(record)
            return False
        slot = _Slot(record, key)
        self._pending.append(slot)
        self._backlog_items += slot.weight
        if key is not None:
            self._coalescing[key] = slot
        self._accepted += 1
        depth = len(self._pending)
        if depth in (1, self._max_batch):
            self._wake.set()
        return True

    def start(self) -> None:
        """Start the writer task on the running loop."""
        if self._task is not None:
            raise RuntimeError("writer already started")
        self._task = asyncio.get_running_loop().create_task(self._run(), name="storage-writer")

    async def flush(self) -> None:
        """Wait until every record submitted so far is written (or dropped as poison)."""
        target = self._accepted
        if self._done >= target:
            return
        if not self.running:
            raise RuntimeError("writer is not running")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((target, future))
        self._wake.set()
        await future

    async def close(self, grace: float | None = 30.0) -> None:
        """Flush and stop; after `grace` seconds (None: never) give up on what is left."""
        self._closing = True
        self._wake.set()
        task = self._task
        if task is None:
            if self._pending:
                log.warning(
                    "storage writer: closed before start, %d records unwritten", len(self._pending)
                )
            self._settle(force=True)
            return
        try:
            done, _ = await asyncio.wait({task}, timeout=grace)
            if not done:
                log.error(
                    "storage writer: gave up after %.1f s with %d records unwritten",
                    grace,
                    len(self._pending),
                )
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        finally:
            self._settle(force=True)

    # ------------------------------------------------------------------ task

    async def _run(self) -> None:
        """Run the loop; a bug in it is logged and the loop restarted, never left dead."""
        while True:
            try:
                await self._loop()
            except Exception:
                log.exception("storage writer: internal error; restarting in 1 s")
                await asyncio.sleep(1.0)
            else:
                return

    async def _loop(self) -> None:
        size = self._max_batch
        consecutive = 0  # failed attempts since the last success
        head_failures = 0  # failures of a single-record batch (poison detection)
        while True:
            if not self._pending:
                self._settle()
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            await self._gather()

            slots = self._take(min(size, len(self._pending)))
            count = len(slots)
            for slot in slots:  # being written: no longer replaceable
                if slot.key is not None and self._coalescing.get(slot.key) is slot:
                    del self._coalescing[slot.key]
            batch = [slot.record for slot in slots]
            started = time.perf_counter()
            try:
                await asyncio.to_thread(self._store.write, batch)
            except Exception as exc:
                self.failures += 1
                consecutive += 1
                transient = isinstance(exc, TRANSIENT_ERRORS)
                if transient:
                    pass  # the database is away: retry the same batch
                elif count > 1:
                    size = max(1, count // 2)  # bisect towards the record it rejects
                else:
                    head_failures += 1
                    if head_failures >= self._poison_after:
                        log.exception(
                            "storage writer: dropping a %s record the database keeps rejecting",
                            type(batch[0]).__name__,
                        )
                        poison = self._pending.popleft()
                        self._backlog_items -= poison.weight
                        self._advance(poison.count, poisoned=True)
                        head_failures = 0
                        continue
                delay = min(self._retry_max, self._retry_initial * 2 ** (consecutive - 1))
                log.warning(
                    "storage writer: write of %d records failed (%s: %s); retry in %.1f s",
                    count,
                    type(exc).__name__,
                    exc,
                    delay,
                    exc_info=consecutive == 1,
                )
                await asyncio.sleep(delay)
                continue

            self.last_write_seconds = time.perf_counter() - started
            self.batches += 1
            represented = sum(slot.count for slot in slots)
            self.written += represented
            for _ in range(count):
                self._backlog_items -= self._pending.popleft().weight
            self._advance(represented, poisoned=False)
            if consecutive:
                log.info("storage writer: writes succeed again after %d failures", consecutive)
            consecutive = 0
            head_failures = 0
            size = min(self._max_batch, size * 2)

    def _take(self, count: int) -> list[_Slot]:
        """The next batch: up to `count` records and `max_batch_items` rows (at least one)."""
        slots: list[_Slot] = []
        weight = 0
        for slot in itertools.islice(self._pending, count):
            weight += slot.weight
            if slots and weight > self._max_batch_items:
                break
            slots.append(slot)
        return slots

    async def _gather(self) -> None:
        """Wait for a full batch, `max_delay`, a flush or close: whichever comes first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._max_delay
        while len(self._pending) < self._max_batch and not self._urgent():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)
            except TimeoutError:
                return

    def _urgent(self) -> bool:
        return self._closing or bool(self._waiters)

    def _advance(self, count: int, *, poisoned: bool) -> None:
        self._done += count
        if poisoned:
            self.poisoned += count
            self.dropped += count
        self._settle()

    def _settle(self, *, force: bool = False) -> None:
        """Wake the flushers whose records are all done (all of them when stopping)."""
        keep = []
        for target, future in self._waiters:
            if future.done():
                continue
            if self._done >= target:
                future.set_result(None)
            elif force:
                future.set_exception(RuntimeError("writer closed before the records were written"))
            else:
                keep.append((target, future))
        self._waiters = keep

    def _dropped(self, record: Record) -> None:
        """Tell `on_drop` (a bug in it is logged: a submit never raises)."""
        if self._on_drop is None:
            return
        try:
            self._on_drop(record)
        except Exception:
            log.exception("storage writer: on_drop failed for a %s", type(record).__name__)

    def _drop(self, why: str) -> None:
        self.dropped += 1
        self._drops_unlogged += 1
        now = time.monotonic()
        if now - self._last_drop_log >= _DROP_LOG_INTERVAL:
            log.warning(
                "storage writer: %s, dropped %d records (%d in total)",
                why,
                self._drops_unlogged,
                self.dropped,
            )
            self._last_drop_log = now
            self._drops_unlogged = 0
