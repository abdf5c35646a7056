"""The writer batches, flushes, retries without losing records, and drops only when full."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from collector.facts import FactKind, Package
from storage.records import HeartbeatSeen, KindSucceeded, Record, Sample, SamplesObserved
from storage.repository import Store
from storage.writer import Writer

from .conftest import T0, observed, vm


class FakeStore:
    """Records every batch; raises for the first `fail_first` writes or for poison records."""

    def __init__(
        self,
        fail_first: int = 0,
        error: type[Exception] = OperationalError,
        poison: set[float] | None = None,
        gate: threading.Event | None = None,
    ) -> None:
        self.fail_first = fail_first
        self.error = error
        self.poison = poison or set()
        self.gate = gate
        self.calls = 0
        self.batches: list[list[Record]] = []

    def write(self, records: Sequence[Record]) -> None:
        self.calls += 1
        if self.gate is not None:
            self.gate.wait(5)
        if self.calls <= self.fail_first:
            if self.error is OperationalError:
                raise OperationalError("INSERT", {}, Exception("database is locked"))
            raise self.error("boom")
        if any(r.at in self.poison for r in records):
            raise ValueError("rejected")
        self.batches.append(list(records))

    @property
    def written(self) -> list[Record]:
        return [r for batch in self.batches for r in batch]


def records_(n: int, start: float = T0) -> list[Record]:
    """Records that are never coalesced (one per poll)."""
    ref = vm()
    return [SamplesObserved(ref, start + i, (Sample("m", "", float(i)),)) for i in range(n)]


async def test_flush_writes_everything_submitted_in_batches() -> None:
    store = FakeStore()
    writer = Writer(store, max_batch=100, max_delay=10.0)
    writer.start()
    records = records_(250)
    for record in records:
        assert writer.submit(record)
    await asyncio.wait_for(writer.flush(), 2)  # does not wait for max_delay
    assert store.written == records
    assert all(len(batch) <= 100 for batch in store.batches)
    assert writer.written == 250
    assert writer.queue_depth == 0
    assert writer.last_write_seconds >= 0
    await writer.close()


async def test_records_wait_at_most_max_delay() -> None:
    store = FakeStore()
    writer = Writer(store, max_batch=1000, max_delay=0.05)
    writer.start()
    writer.submit(records_(1)[0])
    for _ in range(100):
        if store.batches:
            break
        await asyncio.sleep(0.01)
    assert len(store.written) == 1
    await writer.close()


async def test_a_full_batch_is_written_without_waiting_for_the_delay() -> None:
    store = FakeStore()
    writer = Writer(store, max_batch=10, max_delay=60.0)
    writer.start()
    for record in records_(10):
        writer.submit(record)
    for _ in range(100):
        if store.batches:
            break
        await asyncio.sleep(0.01)
    assert [len(b) for b in store.batches] == [10]
    await writer.close()


async def test_close_flushes_and_stops() -> None:
    store = FakeStore()
    writer = Writer(store, max_batch=1000, max_delay=60.0)
    writer.start()
    records = records_(5)
    for record in records:
        writer.submit(record)
    await asyncio.wait_for(writer.close(), 2)
    assert store.written == records
    assert not writer.running
    assert not writer.submit(records[0])  # closed: refused and counted
    assert writer.dropped == 1


async def test_flush_with_nothing_pending_returns_at_once() -> None:
    writer = Writer(FakeStore())
    await writer.flush()  # not even started
    writer.start()
    await writer.flush()
    await writer.close()


async def test_failing_writes_are_retried_and_nothing_is_lost() -> None:
    store = FakeStore(fail_first=6)
    writer = Writer(store, max_batch=50, max_delay=0.01, retry_initial=0.001, retry_max=0.01)
    writer.start()
    records = records_(120)
    for record in records:
        writer.submit(record)
    await asyncio.wait_for(writer.flush(), 5)
    assert store.written == records  # all of them, in order
    assert writer.failures == 6
    assert writer.written == 120
    assert writer.dropped == 0
    await writer.close()


async def test_unexpected_errors_are_retried_too_and_do_not_kill_the_task(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FakeStore(fail_first=3, error=RuntimeError)
    writer = Writer(store, max_batch=8, max_delay=0.01, retry_initial=0.001, retry_max=0.01)
    writer.start()
    records = records_(8)
    with caplog.at_level(logging.WARNING, logger="storage.writer"):
        for record in records:
            writer.submit(record)
        await asyncio.wait_for(writer.flush(), 5)
    assert store.written == records
    assert writer.running
    assert "write of 8 records failed" in caplog.text
    await writer.close()


async def test_a_record_the_database_keeps_rejecting_is_isolated_and_dropped() -> None:
    store = FakeStore(poison={T0 + 37})
    writer = Writer(
        store, max_batch=64, max_delay=0.01, retry_initial=0.001, retry_max=0.002, poison_after=3
    )
    writer.start()
    records = records_(100)
    for record in records:
        writer.submit(record)
    await asyncio.wait_for(writer.flush(), 5)
    assert store.written == [r for r in records if r.at != T0 + 37]
    assert (writer.poisoned, writer.dropped, writer.written) == (1, 1, 99)
    await writer.close()


async def test_queue_full_drops_are_counted_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    gate = threading.Event()
    store = FakeStore(gate=gate)
    writer = Writer(store, max_batch=5, max_delay=0.0, max_queue=10)
    writer.start()
    records = records_(30)
    with caplog.at_level(logging.WARNING, logger="storage.writer"):
        writer.submit(records[0])
        await asyncio.sleep(0.05)  # the writer is now blocked in store.write (the gate)
        accepted = [writer.submit(r) for r in records[1:]]
    assert accepted.count(True) == 9  # the record being written still counts towards the bound
    assert writer.dropped == 20
    assert writer.queue_depth == 10
    assert "queue full" in caplog.text
    gate.set()
    await asyncio.wait_for(writer.flush(), 5)
    assert writer.written == 10
    assert len(store.written) == 10
    await writer.close()


async def test_queue_full_drops_are_handed_to_on_drop_and_poison_is_not() -> None:
    gate = threading.Event()
    dropped: list[Record] = []
    store = FakeStore(gate=gate, poison={T0 + 1})
    writer = Writer(
        store,
        max_batch=5,
        max_delay=0.0,
        max_queue=3,
        retry_initial=0.001,
        retry_max=0.002,
        poison_after=2,
        on_drop=dropped.append,
    )
    writer.start()
    records = records_(6)
    writer.submit(records[0])
    await asyncio.sleep(0.05)  # blocked in store.write
    accepted = [writer.submit(r) for r in records[1:]]
    assert accepted == [True, True, False, False, False]
    assert dropped == records[3:]
    gate.set()
    await asyncio.wait_for(writer.flush(), 5)
    assert writer.poisoned == 1  # records[1] (at T0 + 1), rejected: not handed back
    assert dropped == records[3:]
    await writer.close()


def test_a_failing_on_drop_is_logged_and_submit_still_answers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(record: Record) -> None:
        raise RuntimeError("bug")

    writer = Writer(FakeStore(), max_queue=1, on_drop=broken)
    records = records_(2)
    with caplog.at_level(logging.ERROR, logger="storage.writer"):
        assert writer.submit(records[0])
        assert not writer.submit(records[1])
    assert "on_drop failed" in caplog.text


async def test_heartbeats_and_successes_are_coalesced_in_the_queue() -> None:
    gate = threading.Event()
    store = FakeStore(gate=gate)
    writer = Writer(store, max_batch=100, max_delay=0.0, max_queue=5)
    writer.start()
    blocker = records_(1)[0]
    writer.submit(blocker)
    await asyncio.sleep(0.05)  # blocked in store.write: what follows waits in the queue
    refs = [vm(f"vm{i}") for i in range(3)]
    for step in (5, 1, 9, 3):  # out of order: the newest wins
        for ref in refs:
            assert writer.submit(HeartbeatSeen(ref, T0 + step))
        assert writer.submit(KindSucceeded(refs[0], T0 + step, FactKind.USERS))
    assert writer.queue_depth == 1 + 4  # the blocked one, 3 heartbeats, 1 success
    assert writer.coalesced == 12
    assert writer.dropped == 0
    gate.set()
    await asyncio.wait_for(writer.flush(), 5)
    assert store.written[0] is blocker
    assert sorted((type(r).__name__, r.vm.name, r.at) for r in store.written[1:]) == [
        ("HeartbeatSeen", "vm0", T0 + 9),
        ("HeartbeatSeen", "vm1", T0 + 9),
        ("HeartbeatSeen", "vm2", T0 + 9),
        ("KindSucceeded", "vm0", T0 + 9),
    ]
    assert writer.written == 17  # every accepted record is accounted for
    # Once written, a new heartbeat takes a new place in the queue.
    writer.submit(HeartbeatSeen(refs[0], T0 + 10))
    await asyncio.wait_for(writer.flush(), 5)
    assert store.written[-1] == HeartbeatSeen(refs[0], T0 + 10)
    await writer.close()


async def test_close_gives_up_after_grace_when_the_database_stays_away() -> None:
    store = FakeStore(fail_first=10**9)
    writer = Writer(store, max_delay=0.0, retry_initial=0.001, retry_max=0.01)
    writer.start()
    writer.submit(records_(1)[0])
    flushing = asyncio.ensure_future(writer.flush())
    await asyncio.wait_for(writer.close(grace=0.1), 2)
    assert not writer.running
    assert writer.queue_depth == 1
    with pytest.raises(RuntimeError, match="closed before"):
        await flushing


async def test_writer_with_a_real_store(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'gw.db'}")
    store.upgrade()
    writer = Writer(store, max_batch=3, max_delay=0.01)
    writer.start()
    ref = vm()
    writer.submit(observed(ref, T0, FactKind.PACKAGES, [Package(name="bash", version="5.1")]))
    for record in records_(5):
        writer.submit(record)
    writer.submit(observed(ref, T0 + 60, FactKind.PACKAGES, [Package(name="bash", version="5.2")]))
    writer.submit(HeartbeatSeen(ref, T0 + 61))
    await writer.close()
    assert store.vm("web-1").last_heartbeat == datetime.fromtimestamp(T0 + 61, UTC)
    assert store.samples("web-1", "m")[-1].value == 4.0
    assert [e.type for e in store.events()] == ["package_upgraded", "inventory_first_seen"]
    store.close()


def packages_observed(at: float, count: int) -> Record:
    items = [Package(name=f"p{i}", version="1", manager="dpkg") for i in range(count)]
    return observed(vm(f"vm-{at}"), at, FactKind.PACKAGES, items)


async def test_batches_stop_at_max_batch_items_and_the_backlog_counts_rows() -> None:
    gate = threading.Event()
    store = FakeStore(gate=gate)
    writer = Writer(store, max_batch=100, max_batch_items=1000, max_delay=0.01)
    writer.start()
    big = [packages_observed(T0 + i, 400) for i in range(5)]  # 401 rows each
    small = records_(3, start=T0 + 100)
    for record in [*big, *small]:
        writer.submit(record)
    assert writer.backlog_items == 5 * 401 + 3
    gate.set()
    await asyncio.wait_for(writer.flush(), 5)
    assert [len(b) for b in store.batches] == [2, 2, 4]  # 802, 802, then 401 + 3 rows
    assert store.written == [*big, *small]
    assert writer.backlog_items == 0
    single = packages_observed(T0 + 200, 5000)  # heavier than a batch: still written alone
    writer.submit(single)
    await asyncio.wait_for(writer.flush(), 5)
    assert store.batches[-1] == [single] and writer.backlog_items == 0
    await writer.close()


async def test_a_poisoned_record_leaves_the_backlog() -> None:
    store = FakeStore(poison={T0 + 1})
    writer = Writer(store, max_delay=0.01, retry_initial=0.001, retry_max=0.002, poison_after=2)
    writer.start()
    writer.submit(packages_observed(T0 + 1, 10))
    await asyncio.wait_for(writer.flush(), 5)
    assert (writer.poisoned, writer.backlog_items) == (1, 0)
    await writer.close()
