"""Retention on SQLite and PostgreSQL: roll-ups hold the right min/avg/max, pruning keeps what
it should (recent raw samples, open rows, events unless configured), re-running changes nothing."""

from __future__ import annotations

import statistics
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from collector.config import RetentionConfig
from collector.facts import FactKind, Package
from storage.models import Event, InventoryItem, SampleRollup, SampleRow
from storage.records import Sample, SamplesObserved
from storage.repository import Store
from storage.retention import prune, schedule, series
from tests.storage.conftest import observed, vm

NOW = datetime(2026, 11, 20, 12, 30, tzinfo=UTC)
DAY = 86400.0


def count(store: Store, model: type, *where: object) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(model).where(*where)).scalar_one())


def write_minutes(store: Store, start: datetime, minutes: int, value_of: object) -> list[float]:
    """One memory sample and one filesystem sample a minute; returns the memory values."""
    ref = vm("web-1")
    values = []
    records = []
    for m in range(minutes):
        at = start + timedelta(minutes=m)
        value = float(value_of(m))  # type: ignore[operator]
        values.append(value)
        records.append(
            SamplesObserved(
                ref,
                at.timestamp(),
                (Sample("memory_available_bytes", "", value), Sample("fs_used", "/", 2 * value)),
            )
        )
    store.write(records)
    return values


def test_samples_fold_into_exact_hourly_and_daily_rollups(store: Store) -> None:
    old = NOW - timedelta(days=10)
    start = old.replace(hour=3, minute=0, second=0, microsecond=0)
    values = write_minutes(store, start, 180, lambda m: (m * 37) % 101)  # 3 hours
    recent = write_minutes(store, NOW - timedelta(hours=2), 60, lambda m: m)
    retention = RetentionConfig(samples=7 * DAY, hourly=90 * DAY)

    stats = prune(store.engine, retention, now=NOW)

    assert stats.samples_folded == 2 * 180
    # Recent samples stay raw; old ones are gone, replaced by 3 hourly rows per series.
    assert count(store, SampleRow) == 2 * len(recent)
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(SampleRollup)
            .where(SampleRollup.metric == "memory_available_bytes")
            .order_by(SampleRollup.bucket)
        ).all()
    assert [r.bucket for r in rows] == [start + timedelta(hours=h) for h in range(3)]
    for h, row in enumerate(rows):
        hour = values[h * 60 : (h + 1) * 60]
        assert row.resolution == "hour"
        assert (row.count, row.min, row.max) == (60, min(hour), max(hour))
        assert abs(row.avg - statistics.fmean(hour)) < 1e-9

    # A second run changes nothing.
    again = prune(store.engine, retention, now=NOW)
    assert (again.samples_folded, again.hourly_folded) == (0, 0)

    # 100 days later the hourly rows have become one daily row with the same totals.
    later = prune(store.engine, retention, now=NOW + timedelta(days=100))
    # 3 hours of the old samples and 2 (10:30-11:30) of the recent ones, per series.
    assert later.hourly_folded == 2 * (3 + 2)
    with store.engine.connect() as conn:
        daily = conn.execute(
            select(SampleRollup).where(SampleRollup.metric == "memory_available_bytes")
        ).all()
    assert {r.resolution for r in daily} == {"day"}
    (d,) = [r for r in daily if r.bucket == start.replace(hour=0)]
    assert d.bucket == start.replace(hour=0)
    assert (d.count, d.min, d.max) == (180, min(values), max(values))
    assert abs(d.avg - statistics.fmean(values)) < 1e-9
    # Daily roll-ups are kept forever by default.
    assert count(store, SampleRollup, SampleRollup.resolution == "day") == 4


def test_late_samples_merge_into_an_existing_hour(store: Store) -> None:
    start = (NOW - timedelta(days=10)).replace(minute=0, second=0, microsecond=0)
    first = write_minutes(store, start, 30, lambda m: m)
    retention = RetentionConfig(samples=7 * DAY, hourly=90 * DAY)
    prune(store.engine, retention, now=NOW)
    second = write_minutes(store, start + timedelta(minutes=30), 30, lambda m: 1000 + m)
    prune(store.engine, retention, now=NOW)
    with store.engine.connect() as conn:
        (row,) = conn.execute(
            select(SampleRollup).where(SampleRollup.metric == "memory_available_bytes")
        ).all()
    both = first + second
    assert (row.count, row.min, row.max) == (60, min(both), max(both))
    assert abs(row.avg - statistics.fmean(both)) < 1e-6


def test_history_is_kept_forever_unless_configured(store: Store) -> None:
    ref = vm("web-1")
    t_old = (NOW - timedelta(days=400)).timestamp()
    t_new = (NOW - timedelta(days=1)).timestamp()
    store.write([observed(ref, t_old, FactKind.PACKAGES, [Package(name="a", version="1")])])
    store.write([observed(ref, t_old + 60, FactKind.PACKAGES, [Package(name="a", version="2")])])
    store.write([observed(ref, t_new, FactKind.PACKAGES, [Package(name="a", version="3")])])
    closed = InventoryItem.valid_to.is_not(None)
    assert count(store, InventoryItem, closed) == 2
    events = count(store, Event)
    old_events = count(store, Event, Event.at < NOW - timedelta(days=30))
    assert 0 < old_events < events

    prune(store.engine, RetentionConfig(), now=NOW)
    assert count(store, InventoryItem, closed) == 2
    assert count(store, Event) == events

    stats = prune(store.engine, RetentionConfig(closed_rows=30 * DAY, events=30 * DAY), now=NOW)
    # The row closed 400 days ago goes; the one closed yesterday and the open one stay.
    assert stats.closed_rows_deleted == 1
    assert count(store, InventoryItem) == 2
    assert count(store, InventoryItem, InventoryItem.valid_to.is_(None)) == 1
    assert stats.events_deleted == old_events
    assert count(store, Event) == events - old_events
    assert [p["version"] for p in store.inventory("web-1").facts[FactKind.PACKAGES]] == ["3"]


def test_daily_rollups_expire_when_configured(store: Store) -> None:
    start = (NOW - timedelta(days=200)).replace(minute=0, second=0, microsecond=0)
    write_minutes(store, start, 10, lambda m: m)
    prune(store.engine, RetentionConfig(), now=NOW)
    assert count(store, SampleRollup, SampleRollup.resolution == "day") == 2
    stats = prune(store.engine, RetentionConfig(daily=180 * DAY), now=NOW)
    assert stats.daily_deleted == 2
    assert count(store, SampleRollup) == 0


def test_series_reads_raw_and_rolled_up_alike(store: Store) -> None:
    start = (NOW - timedelta(days=10)).replace(minute=0, second=0, microsecond=0)
    values = write_minutes(store, start, 120, lambda m: m)
    ref_id = store.vm("web-1")
    assert ref_id.name == "web-1"
    with store.engine.connect() as conn:
        vm_id = conn.execute(select(SampleRow.vm_id).limit(1)).scalar_one()
    before = series(store.engine, vm_id, "memory_available_bytes", start, NOW, step=3600.0)
    prune(store.engine, RetentionConfig(), now=NOW)
    after = series(store.engine, vm_id, "memory_available_bytes", start, NOW, step=3600.0)
    assert [(p.at, p.count, p.min, p.max) for p in before] == [
        (p.at, p.count, p.min, p.max) for p in after
    ]
    assert [p.count for p in after] == [60, 60]
    assert abs(after[0].avg - statistics.fmean(values[:60])) < 1e-9


async def test_the_service_scheduler_gets_a_daily_job(store: Store) -> None:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    scheduler = AsyncIOScheduler(timezone=UTC)
    scheduler.start(paused=True)
    try:
        schedule(scheduler, store.engine, RetentionConfig())
        job = scheduler.get_job("retention")
        assert job is not None
        assert job.trigger.interval == timedelta(days=1)
        # The job itself prunes (in a thread) and never raises into the scheduler.
        start = (NOW - timedelta(days=10)).replace(minute=0, second=0, microsecond=0)
        write_minutes(store, start, 5, lambda m: m)
        await job.func()
        assert count(store, SampleRow) == 0
        assert count(store, SampleRollup) == 2
    finally:
        scheduler.shutdown(wait=False)
