"""Database growth per VM per day, before and after retention (not a test).

1. Runs the service against a simulated fleet (default 50 VMs) on compressed cadences for a few
   seconds, to learn how many sample series a VM really produces per poll kind (memory,
   filesystems, network counters).
2. Writes one day of those series at the default cadences (memory and filesystems every 60 s,
   network with the system poll every 120 s) into a fresh SQLite database through the Store,
   with synthetic timestamps (a day compressed into seconds), and measures the file (VACUUMed)
   per VM.
3. Applies retention as it would be 8 days later (raw → hourly) and 100 days later
   (hourly → daily), measuring again.

    PYTHONPATH=. .venv/bin/python bench/retention_growth.py [--vms 50] 2>/dev/null
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sqlite3
import tempfile
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select, text

from agent.simulator import Fleet
from collector.config import RetentionConfig
from collector.daemon import running
from storage.models import SampleRollup, SampleRow
from storage.records import Sample, SamplesObserved, VmRef
from storage.repository import Store
from storage.retention import prune
from tests.support.service import fast_config, wait_until

GROUPS = {"memory": 60, "filesystem": 60, "network": 120}  # default cadences (s)
DAY0 = datetime(2026, 1, 1, tzinfo=UTC)


def group_of(metric: str) -> str:
    return next(g for g in GROUPS if metric.startswith(g) or (g == "memory" and "swap" in metric))


async def learn_series(vms: int, base: Path) -> dict[str, list[tuple[str, str]]]:
    """Per VM, its (metric, label) series as the real service records them."""
    fleet = Fleet(base / "sockets", vms, seed=1)
    await fleet.start()
    config = fast_config(base)
    try:
        async with running(config) as svc:
            await wait_until(lambda: len(svc.service.fleet.vms) == vms, 60, "fleet")
            await asyncio.sleep(8)
            await svc.service.writer.flush()
    finally:
        await fleet.stop()
    store = Store(config.storage.url)
    series: dict[str, set[tuple[str, str]]] = {}
    with store.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT DISTINCT v.key, s.metric, s.label "
                "FROM samples s JOIN vms v ON v.id = s.vm_id"
            )
        )
        for key, metric, label in rows:
            series.setdefault(key, set()).add((metric, label))
    store.close()
    return {k: sorted(v) for k, v in series.items()}


def size(path: Path) -> int:
    """Bytes of the database file once VACUUMed (deleted rows' pages given back)."""
    with sqlite3.connect(path) as conn:
        conn.execute("VACUUM")
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        page = conn.execute("PRAGMA page_size").fetchone()[0]
    return int(pages) * int(page)


def count(store: Store, model: type) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(model)).scalar_one())


def write_day(store: Store, series: dict[str, list[tuple[str, str]]]) -> None:
    for key, items in series.items():
        ref = VmRef(key=key, name=key, hypervisor="bench", protocol="qga")
        records = []
        for group, cadence in GROUPS.items():
            mine = [(m, lab) for m, lab in items if group_of(m) == group]
            for step in range(86400 // cadence):
                at = (DAY0 + timedelta(seconds=step * cadence)).timestamp()
                samples = tuple(
                    Sample(m, lab, float(step * 4096 + i)) for i, (m, lab) in enumerate(mine)
                )
                records.append(SamplesObserved(ref, at, samples))
        for start in range(0, len(records), 2000):
            store.write(records[start : start + 2000])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--vms", type=int, default=50)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="gwgrowth-", dir="/tmp"))
    (base / "sockets").mkdir()
    try:
        series = asyncio.run(learn_series(args.vms, base))
        vms = len(series)
        per_group = Counter(group_of(m) for items in series.values() for m, _ in items)
        print(
            f"{vms} simulated VMs; sample series per VM:",
            {g: round(n / vms, 1) for g, n in per_group.items()},
        )

        path = base / "growth.db"
        store = Store(f"sqlite:///{path}")
        store.upgrade()
        empty = size(path)
        write_day(store, series)
        raw_rows, raw_bytes = count(store, SampleRow), size(path) - empty
        print(
            f"raw: {raw_rows / vms:.0f} sample rows, "
            f"{raw_bytes / vms / 1024:.0f} KiB per VM per day"
        )

        prune(store.engine, RetentionConfig(), now=DAY0 + timedelta(days=8))
        hourly_rows, hourly_bytes = count(store, SampleRollup), size(path) - empty
        print(
            f"after 7 days (hourly roll-ups): {hourly_rows / vms:.0f} rows, "
            f"{hourly_bytes / vms / 1024:.1f} KiB per VM per day"
        )

        prune(store.engine, RetentionConfig(), now=DAY0 + timedelta(days=100))
        daily_rows, daily_bytes = count(store, SampleRollup), size(path) - empty
        print(
            f"after 90 days (daily roll-ups): {daily_rows / vms:.0f} rows, "
            f"{daily_bytes / vms / 1024:.2f} KiB per VM per day"
        )
        store.close()
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
