"""Scale sanity (not timed): 200 VMs x 1,500 packages, written with a bounded statement count."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event, func, select

from collector.facts import FactKind, Package
from storage.models import Event, InventoryItem
from storage.records import HeartbeatSeen, Record, VmRef
from storage.repository import Store

from .conftest import T0, observed, vm

VMS = 200
PACKAGES = 1500


@contextmanager
def count_statements(store: Store) -> Iterator[list[tuple[str, bool]]]:
    """Every statement sent to the driver (an executemany counts once)."""
    seen: list[tuple[str, bool]] = []

    def listener(
        conn: Any, cursor: Any, statement: str, params: Any, context: Any, executemany: bool
    ) -> None:
        seen.append((statement.split(maxsplit=1)[0], executemany))

    event.listen(store.engine, "before_cursor_execute", listener)
    try:
        yield seen
    finally:
        event.remove(store.engine, "before_cursor_execute", listener)


def packages(ref: VmRef, generation: int) -> list[Package]:
    """Generation 1 differs from 0 by 10 changes: 6 upgrades, 2 removals, 2 additions."""
    names = [f"pkg{i:04d}" for i in range(PACKAGES)]
    if generation:
        names = [*names[:-2], f"extra-{ref.name}-a", f"extra-{ref.name}-b"]
    return [
        Package(
            name=name,
            version="2.0" if generation and i < 6 else "1.0",
            arch="amd64",
            manager="dpkg",
        )
        for i, name in enumerate(names)
    ]


def write_batches(
    store: Store, refs: list[VmRef], per_batch: int, at: float, generation: int
) -> list[int]:
    counts = []
    for start in range(0, len(refs), per_batch):
        batch: list[Record] = []
        for ref in refs[start : start + per_batch]:
            batch.append(observed(ref, at, FactKind.PACKAGES, packages(ref, generation)))
            batch.append(HeartbeatSeen(ref, at))
        with count_statements(store) as seen:
            store.write(batch)
        counts.append(len(seen))
    return counts


def test_fleet_of_packages_is_written_with_a_bounded_number_of_statements(store: Store) -> None:
    refs = [vm(f"vm{i:03d}") for i in range(VMS)]

    # First sight, in batches of different sizes: the statement count must not depend on rows.
    first = write_batches(store, refs[:10], per_batch=1, at=T0, generation=0)
    first += write_batches(store, refs[10:], per_batch=95, at=T0, generation=0)
    assert len(set(first)) == 1, first
    assert first[0] <= 12

    with store.engine.connect() as conn:
        current = conn.execute(
            select(func.count()).select_from(InventoryItem).where(InventoryItem.valid_to.is_(None))
        ).scalar()
        assert current == VMS * PACKAGES
        assert conn.execute(select(func.count()).select_from(Event)).scalar() == VMS

    # Ten changes per VM, in batches of 1 and 50.
    changed = write_batches(store, refs[:1], per_batch=1, at=T0 + 3600, generation=1)
    changed += write_batches(store, refs[1:], per_batch=50, at=T0 + 3600, generation=1)
    assert len(set(changed)) == 1, changed
    assert changed[0] <= 15

    with store.engine.connect() as conn:
        by_type = dict(
            conn.execute(
                select(Event.type, func.count())
                .where(Event.type != "inventory_first_seen")
                .group_by(Event.type)
            ).all()
        )
        current = conn.execute(
            select(func.count()).select_from(InventoryItem).where(InventoryItem.valid_to.is_(None))
        ).scalar()
    assert by_type == {
        "package_upgraded": VMS * 6,
        "package_removed": VMS * 2,
        "package_added": VMS * 2,
    }
    assert current == VMS * PACKAGES

    # The warm-start digests match what the collector would compute for every VM.
    digests = store.current_digests()
    assert len(digests) == VMS
    for ref in (refs[0], refs[17], refs[-1]):
        expected = observed(ref, 0, FactKind.PACKAGES, packages(ref, 1)).facts.digest()
        assert digests[(ref.key, FactKind.PACKAGES)] == expected


def test_heartbeats_for_many_vms_are_one_update(store: Store) -> None:
    refs = [vm(f"vm{i:04d}") for i in range(1200)]
    store.write([HeartbeatSeen(ref, T0) for ref in refs])
    with count_statements(store) as seen:
        store.write([HeartbeatSeen(ref, T0 + 5) for ref in refs] * 3)
    updates = [s for s in seen if s[0] == "UPDATE"]
    assert updates == [("UPDATE", True)]
    # SELECT of the VMs in chunks of 500 keys, BEGIN, the UPDATE, nothing per row.
    assert len(seen) <= 6, seen
