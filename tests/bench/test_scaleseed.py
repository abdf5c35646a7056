"""bench/scaleseed.py: the fast seed writes what `Store.write` writes, and the schema stays
at Alembic head; bench/scaleout.py's generator then diffs against real current rows."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bench import scaleseed
from bench.scaleout import CADENCES, FLUSH_SECONDS, Ticks
from collector.facts import FactKind
from collector.runner import STORE_TIMESTAMPS_EVERY
from storage.records import HeartbeatSeen, InventoryObserved
from storage.repository import Store

AT = 1_700_000_000.123456


def fleets(collectors: int = 2, vms: int = 4, packages: int = 30) -> list[list[scaleseed.SimVm]]:
    return [scaleseed.build_fleet(i, vms, packages) for i in range(collectors)]


def seeded(url: str, fleet_list: list[list[scaleseed.SimVm]]) -> scaleseed.SeedStats:
    store = Store(url)
    store.upgrade()
    store.close()
    return scaleseed.fast_seed(url, fleet_list, AT, log=lambda _line: None)


def test_fast_seed_equals_store_write(pg_url: str, tmp_path: Path) -> None:
    fleet_list = fleets()
    stats = seeded(pg_url, fleet_list)
    every_vm = [vm for fleet in fleet_list for vm in fleet]
    assert stats.vms == 8
    assert stats.items == sum(len(f.items) for vm in every_vm for f in vm.seed_sets())
    assert stats.sets == stats.events == 8 * len(scaleseed.SEED_KINDS)

    scaleseed.verify_schema(pg_url)
    compared = scaleseed.verify_seed(pg_url, f"sqlite:///{tmp_path / 'ref.db'}", every_vm, AT)
    assert compared == stats.rows  # every row of every VM was compared
    store = Store(pg_url)
    try:
        assert store.recompute_digests() == store.current_digests()
        assert len(store.current_digests()) == stats.sets
        for fleet in fleet_list:
            assert scaleseed.seeded_digest_mismatches(store.engine, fleet) == 0
        # Ids keep counting after the seed: a VM written later gets a fresh one.
        other = scaleseed.build_fleet(7, 1, 5)[0]
        store.write([InventoryObserved(other.ref, AT + 1, f) for f in other.seed_sets()])
        assert store.vm(other.ref.key).first_seen.timestamp() == pytest.approx(AT + 1)
    finally:
        store.close()


def test_fast_seed_without_superuser_rights(pg_admin_url: str, pg_url: str, tmp_path: Path) -> None:
    """Foreign keys are dropped and re-added (validated) instead of skipped."""
    name = make_url(pg_url).database
    admin = create_engine(pg_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("DROP ROLE IF EXISTS gw_seeder"))
        conn.execute(text("CREATE ROLE gw_seeder LOGIN"))
        conn.execute(text(f'ALTER DATABASE "{name}" OWNER TO gw_seeder'))
    url = make_url(pg_url).set(username="gw_seeder").render_as_string(hide_password=False)
    try:
        fleet_list = fleets(1, 3, 20)
        seeded(url, fleet_list)
        scaleseed.verify_schema(url)
        scaleseed.verify_seed(url, f"sqlite:///{tmp_path / 'ref.db'}", fleet_list[0], AT)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text("DROP ROLE IF EXISTS gw_seeder"))
        admin.dispose()


def test_verify_seed_sees_a_difference(pg_url: str, tmp_path: Path) -> None:
    fleet_list = fleets(1, 2, 10)
    seeded(pg_url, fleet_list)
    engine = create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE inventory_items SET value = value || ' ' WHERE id = "
                "(SELECT min(id) FROM inventory_items WHERE kind = 'packages')"
            )
        )
    engine.dispose()
    with pytest.raises(RuntimeError, match="inventory_items"):
        scaleseed.verify_seed(pg_url, f"sqlite:///{tmp_path / 'ref.db'}", fleet_list[0], AT)


def test_fast_seed_refuses_a_database_in_use(pg_url: str) -> None:
    vm = fleets(1, 1, 5)[0][0]
    store = Store(pg_url)
    store.upgrade()
    store.write([HeartbeatSeen(vm.ref, AT)])
    store.close()
    with pytest.raises(RuntimeError, match="empty database"):
        scaleseed.fast_seed(pg_url, [[vm]], AT, log=lambda _line: None)


def test_steady_phase_changes_apply_to_seeded_rows(pg_url: str) -> None:
    """A collector's drift is a diff against the seeded rows: one upgrade closes one row and
    opens one, as it would after a seed through Store.write."""
    fleet_list = fleets(1, 3, 40)
    seeded(pg_url, fleet_list)
    vm = fleet_list[0][1]
    vm.upgrade(random.Random(1))
    vm.install()
    store = Store(pg_url)
    try:
        stats = store.write([InventoryObserved(vm.ref, time.time(), vm.package_set())])
        assert (stats.items_opened, stats.items_closed) == (2, 1)
        types = sorted(
            e.type for e in store.events(domain=vm.ref.key) if e.kind == FactKind.PACKAGES
        )
        assert types == ["inventory_first_seen", "package_added", "package_upgraded"]
    finally:
        store.close()


def test_ticks_visit_each_vm_once_per_cadence() -> None:
    fleet = scaleseed.build_fleet(0, 200, 5)
    ticks = Ticks(fleet, random.Random(0))
    for cadence in ("heartbeat", "users", "memory", "system"):
        period = round(CADENCES[cadence] / FLUSH_SECONDS)
        seen = [vm.ref.key for k in range(period) for vm in ticks.due(cadence, k)]
        assert sorted(seen) == sorted(vm.ref.key for vm in fleet)
    # The service stores a VM's last-seen heartbeat every few minutes, not every 5 s.
    minute = round(STORE_TIMESTAMPS_EVERY / FLUSH_SECONDS)
    heartbeats = [
        r for k in range(minute) for r in ticks.records(k) if isinstance(r, HeartbeatSeen)
    ]
    assert sorted(r.vm.key for r in heartbeats) == sorted(vm.ref.key for vm in fleet)
