"""Retention and roll-ups: raw samples for days, hourly min/avg/max for months, daily after.

Samples are the only table that grows with every poll (memory and filesystem use every minute
of every VM), so they are the ones folded: raw rows older than `[retention] samples` become one
hourly row per series and hour, hourly rows older than `[retention] hourly` become daily rows,
and daily rows live forever unless `[retention] daily` is set. Closed validity rows and events
are the history operators ask about, so they are kept forever unless configured.

Each fold is set-based (INSERT ... SELECT ... GROUP BY ... ON CONFLICT merge, then DELETE) and
runs one day of data per transaction, so neither a 10,000-VM fleet nor a first run over months
of backlog holds the database for long, and a crash between windows loses nothing: the fold and
the delete of a window commit together. Synchronous like the Store: the service's daily job
runs it in a thread, `guestwatch db prune` directly.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Table,
    and_,
    case,
    delete,
    func,
    literal,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite

from collector.config import RetentionConfig
from storage import db
from storage.models import Event, InventoryItem, SampleRollup, SampleRow
from storage.queries import StoreError

log = logging.getLogger(__name__)

HOUR: Final = "hour"
DAY: Final = "day"
#: Data folded per transaction.
WINDOW: Final = timedelta(days=1)
#: Most stored points one bucketed `series` read scans (a week of a VM's busiest metric at one
#: sample a minute is ~10,000 per label).
MAX_SCAN: Final = 1_000_000

_SAMPLES = cast(Table, SampleRow.__table__)
_ROLLUPS = cast(Table, SampleRollup.__table__)
_ITEMS = cast(Table, InventoryItem.__table__)
_EVENTS = cast(Table, Event.__table__)


@dataclass(frozen=True, slots=True)
class PruneStats:
    """What one `prune` did (logged by the daily job, printed by `guestwatch db prune`)."""

    samples_folded: int = 0
    hourly_folded: int = 0
    daily_deleted: int = 0
    closed_rows_deleted: int = 0
    events_deleted: int = 0
    seconds: float = 0.0


def floor_hour(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def floor_day(at: datetime) -> datetime:
    return floor_hour(at).replace(hour=0)


def _bucket(conn: Connection, column: Any, resolution: str) -> ColumnElement[Any]:
    """Start of the hour or day of a timestamp column, in the column's own stored form."""
    dialect = conn.dialect.name
    if dialect == "sqlite":
        # The text form UtcDateTime stores, so comparisons and reads stay uniform.
        pattern = "%Y-%m-%d %H:00:00.000000" if resolution == HOUR else "%Y-%m-%d 00:00:00.000000"
        return func.strftime(pattern, column)
    if dialect == "postgresql":
        return func.date_trunc(resolution, column, "UTC")
    raise StoreError(f"unsupported database backend: {dialect}")


def _merge_insert(conn: Connection, source: Any) -> Any:
    """INSERT INTO sample_rollups SELECT ... merging into an existing bucket (late data)."""
    columns = ["vm_id", "metric", "label", "resolution", "bucket", "count", "min", "avg", "max"]
    keys = ["vm_id", "metric", "label", "resolution", "bucket"]
    r = _ROLLUPS.c
    dialect = conn.dialect.name
    stmt: Any
    if dialect == "postgresql":
        stmt = postgresql.insert(_ROLLUPS).from_select(columns, source)
    elif dialect == "sqlite":
        stmt = sqlite.insert(_ROLLUPS).from_select(columns, source)
    else:
        raise StoreError(f"unsupported database backend: {dialect}")
    new = stmt.excluded
    return stmt.on_conflict_do_update(
        index_elements=keys,
        set_={
            "count": r.count + new.count,
            "min": case((new.min < r.min, new.min), else_=r.min),
            "max": case((new.max > r.max, new.max), else_=r.max),
            "avg": (r.avg * r.count + new.avg * new.count) / (r.count + new.count),
        },
    )


def _fold_samples(engine: Engine, cutoff: datetime) -> int:
    """Raw samples before `cutoff` (an hour boundary) → hourly roll-ups; returns rows folded."""
    s = _SAMPLES.c
    folded = 0
    with engine.connect() as conn:
        oldest = conn.execute(select(func.min(s.at)).where(s.at < cutoff)).scalar()
    if oldest is None:
        return 0
    for start in _windows_from(floor_hour(oldest), cutoff):
        end = min(start + WINDOW, cutoff)
        with engine.connect() as conn:
            conn.execution_options(**{db.WRITE_TRANSACTION: True})
            with conn.begin():
                bucket = _bucket(conn, s.at, HOUR)
                in_window = and_(s.at >= start, s.at < end)
                source = (
                    select(
                        s.vm_id,
                        s.metric,
                        s.label,
                        literal(HOUR),
                        bucket,
                        func.count(),
                        func.min(s.value),
                        func.avg(s.value),
                        func.max(s.value),
                    )
                    .where(in_window)
                    .group_by(s.vm_id, s.metric, s.label, bucket)
                )
                conn.execute(_merge_insert(conn, source))
                folded += conn.execute(delete(_SAMPLES).where(in_window)).rowcount
    return folded


def _fold_hourly(engine: Engine, cutoff: datetime) -> int:
    """Hourly roll-ups before `cutoff` (a day boundary) → daily roll-ups; returns rows folded."""
    r = _ROLLUPS.c
    folded = 0
    hourly = r.resolution == HOUR
    with engine.connect() as conn:
        oldest = conn.execute(select(func.min(r.bucket)).where(hourly, r.bucket < cutoff)).scalar()
    if oldest is None:
        return 0
    for start in _windows_from(floor_day(oldest), cutoff):
        end = min(start + WINDOW, cutoff)
        with engine.connect() as conn:
            conn.execution_options(**{db.WRITE_TRANSACTION: True})
            with conn.begin():
                bucket = _bucket(conn, r.bucket, DAY)
                in_window = and_(hourly, r.bucket >= start, r.bucket < end)
                total = func.sum(r.count)
                source = (
                    select(
                        r.vm_id,
                        r.metric,
                        r.label,
                        literal(DAY),
                        bucket,
                        total,
                        func.min(r.min),
                        func.sum(r.avg * r.count) / total,
                        func.max(r.max),
                    )
                    .where(in_window)
                    .group_by(r.vm_id, r.metric, r.label, bucket)
                )
                conn.execute(_merge_insert(conn, source))
                folded += conn.execute(delete(_ROLLUPS).where(in_window)).rowcount
    return folded


def _windows_from(start: datetime, cutoff: datetime) -> Iterable[datetime]:
    while start < cutoff:
        yield start
        start += WINDOW


def _delete(engine: Engine, table: Table, condition: ColumnElement[bool]) -> int:
    with engine.connect() as conn:
        conn.execution_options(**{db.WRITE_TRANSACTION: True})
        with conn.begin():
            return conn.execute(delete(table).where(condition)).rowcount


def prune(engine: Engine, retention: RetentionConfig, now: datetime | None = None) -> PruneStats:
    """Fold and delete what `retention` no longer keeps raw; idempotent, safe to re-run."""
    started = time.perf_counter()
    now = (now or datetime.now(UTC)).astimezone(UTC)
    samples_folded = _fold_samples(engine, floor_hour(now - timedelta(seconds=retention.samples)))
    hourly_folded = _fold_hourly(engine, floor_day(now - timedelta(seconds=retention.hourly)))
    daily_deleted = closed_deleted = events_deleted = 0
    if retention.daily is not None:
        cutoff = floor_day(now - timedelta(seconds=retention.daily))
        r = _ROLLUPS.c
        daily_deleted = _delete(engine, _ROLLUPS, and_(r.resolution == DAY, r.bucket < cutoff))
    if retention.closed_rows is not None:
        cutoff = now - timedelta(seconds=retention.closed_rows)
        i = _ITEMS.c
        closed_deleted = _delete(engine, _ITEMS, and_(i.valid_to.is_not(None), i.valid_to < cutoff))
    if retention.events is not None:
        cutoff = now - timedelta(seconds=retention.events)
        events_deleted = _delete(engine, _EVENTS, _EVENTS.c.at < cutoff)
    stats = PruneStats(
        samples_folded=samples_folded,
        hourly_folded=hourly_folded,
        daily_deleted=daily_deleted,
        closed_rows_deleted=closed_deleted,
        events_deleted=events_deleted,
        seconds=time.perf_counter() - started,
    )
    log.info(
        "retention: %d samples folded into hourly roll-ups, %d hourly into daily, deleted %d "
        "daily roll-ups, %d closed rows, %d events (%.1fs)",
        stats.samples_folded,
        stats.hourly_folded,
        stats.daily_deleted,
        stats.closed_rows_deleted,
        stats.events_deleted,
        stats.seconds,
    )
    return stats


# ------------------------------------------------------------------------------ reading


@dataclass(frozen=True, slots=True)
class SeriesPoint:
    """One bucket of a series: raw samples are buckets of one value."""

    at: datetime
    label: str
    count: int
    min: float
    avg: float
    max: float


def series(
    engine: Engine,
    vm_id: int,
    metric: str,
    since: datetime,
    until: datetime,
    *,
    step: float | None = None,
    limit: int = 10_000,
) -> list[SeriesPoint]:
    """A VM's series of one metric over [since, until), oldest first, whatever its age.

    Reads raw samples, hourly and daily roll-ups alike (retention moves data between them, so
    nothing is counted twice); with `step` (seconds) buckets are merged to that width, count-
    weighted, as the roll-ups themselves are.
    """
    s, r = _SAMPLES.c, _ROLLUPS.c
    # Bucketing needs every point of the window; `limit` then applies to the buckets.
    scan = MAX_SCAN if step else limit
    points: list[SeriesPoint] = []
    with engine.connect() as conn:
        raw = (
            select(s.at, s.label, s.value)
            .where(s.vm_id == vm_id, s.metric == metric, s.at >= since, s.at < until)
            .order_by(s.at, s.id)
            .limit(scan)
        )
        points += [
            SeriesPoint(row.at, row.label, 1, row.value, row.value, row.value)
            for row in conn.execute(raw)
        ]
        rolled = (
            select(r.bucket, r.label, r.count.label("n"), r.min, r.avg, r.max)
            .where(r.vm_id == vm_id, r.metric == metric, r.bucket >= since, r.bucket < until)
            .order_by(r.bucket, r.id)
            .limit(scan)
        )
        points += [
            SeriesPoint(row.bucket, row.label, row.n, row.min, row.avg, row.max)
            for row in conn.execute(rolled)
        ]
    points.sort(key=lambda p: (p.at, p.label))
    if step:
        points = _rebucket(points, step, since)
    return points[:limit]


def _rebucket(points: list[SeriesPoint], step: float, origin: datetime) -> list[SeriesPoint]:
    merged: dict[tuple[datetime, str], SeriesPoint] = {}
    base = origin.timestamp()
    for p in points:
        start = datetime.fromtimestamp(base + ((p.at.timestamp() - base) // step) * step, UTC)
        old = merged.get((start, p.label))
        if old is None:
            merged[(start, p.label)] = SeriesPoint(start, p.label, p.count, p.min, p.avg, p.max)
            continue
        count = old.count + p.count
        merged[(start, p.label)] = SeriesPoint(
            start,
            p.label,
            count,
            min(old.min, p.min),
            (old.avg * old.count + p.avg * p.count) / count,
            max(old.max, p.max),
        )
    return sorted(merged.values(), key=lambda p: (p.at, p.label))


#: First run of the daily job after start-up: not during the start-up burst of first polls.
FIRST_RUN_DELAY: Final = timedelta(minutes=10)


def schedule(scheduler: Any, engine: Engine, retention: RetentionConfig) -> None:
    """Add the daily retention job to the service's APScheduler (AsyncIOScheduler)."""

    async def job() -> None:
        # A coroutine so APScheduler runs it on the loop; the database work goes to a thread.
        try:
            await asyncio.to_thread(prune, engine, retention)
        except Exception:
            log.exception("retention: prune failed (retried tomorrow)")

    scheduler.add_job(
        job,
        "interval",
        days=1,
        id="retention",
        next_run_time=datetime.now(UTC) + FIRST_RUN_DELAY,
        max_instances=1,
        coalesce=True,
        replace_existing=True,
    )
