"""A package list diffed by its changed ranges leaves exactly the history a full diff does,
and the store diffs in full whenever a delta cannot be trusted."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.dialects import postgresql

from collector.facts import FactKind, FactSet, Package, fact_set
from collector.ranges import RANGE_DIGEST_BYTES, SetRanges, delta, split
from storage.models import InventoryItem, InventorySet
from storage.records import InventoryObserved, Record
from storage.repository import Store, _in_ranges

from .conftest import T0, vm
from .test_repository import event_tuples, rows

WEB = vm()
#: Names whose order differs between code points and a natural-language collation.
NAMES = [f"{stem}{i}" for i in range(300) for stem in ("lib", "Lib", "py-", "py+", "x.", "é")]


def packages(versions: dict[str, str]) -> FactSet:
    return fact_set(
        FactKind.PACKAGES,
        [Package(name=n, version=v, manager="dpkg", arch="amd64") for n, v in versions.items()],
    )


class Sender:
    """Sends package lists as the runner does: with a delta once it knows the last split."""

    def __init__(self) -> None:
        self.known: SetRanges | None = None

    def record(self, at: float, versions: dict[str, str]) -> InventoryObserved:
        facts = packages(versions)
        ranges, items, starts = split(facts, None if self.known is None else self.known.bounds)
        change = None if self.known is None else delta(self.known, ranges, items, starts)
        self.known = ranges
        return InventoryObserved(WEB, at, facts, change)


def full(record: InventoryObserved) -> InventoryObserved:
    return InventoryObserved(record.vm, record.at, record.facts)


def history(store: Store) -> tuple[object, ...]:
    with store.engine.connect() as conn:
        sets = conn.execute(select(InventorySet.digest, InventorySet.item_count)).all()
        open_rows = conn.execute(
            select(InventoryItem.identity, InventoryItem.name, InventoryItem.value)
            .where(InventoryItem.valid_to.is_(None))
            .order_by(InventoryItem.identity)
        ).all()
    return rows(store, "packages"), event_tuples(store), sets, open_rows


def reference(tmp_path: Path) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'reference.db'}")
    store.upgrade()
    return store


def test_ranged_diffs_leave_the_history_a_full_diff_leaves(store: Store, tmp_path: Path) -> None:
    ref, sender, rng = reference(tmp_path), Sender(), random.Random(7)
    versions = {name: "1.0" for name in NAMES[:1200]}
    for step in range(12):
        record = sender.record(T0 + 60 * step, versions)
        stats = store.write([record])
        ref.write([full(record)])
        assert stats.sets_ranged == (0 if step == 0 else 1)
        assert history(store) == history(ref)
        for name in rng.sample(sorted(versions), 3):
            versions[name] = f"{step + 2}.0"  # upgrades
        del versions[rng.choice(sorted(versions))]  # a removal
        versions[rng.choice(NAMES[1200:])] = "1.0"  # an install
    ref.close()


def test_a_delta_against_a_set_the_store_does_not_hold_is_diffed_in_full(
    store: Store, tmp_path: Path
) -> None:
    ref, sender = reference(tmp_path), Sender()
    versions = {name: "1.0" for name in NAMES[:400]}
    first = sender.record(T0, versions)
    store.write([first])
    ref.write([full(first)])
    ref.write([full(sender.record(T0 + 1, {}))])  # the store never got this one (dropped)
    versions["lib1"] = "2.0"
    record = sender.record(T0 + 2, versions)
    stats = store.write([record])
    ref.write([full(record)])
    assert stats.sets_ranged == 0
    assert history(store)[3] == history(ref)[3]  # the same current rows
    ref.close()


@pytest.mark.parametrize("evil", ["lib7\x00evil", "lib7\udc80evil"])
def test_identities_the_store_would_alter_are_diffed_in_full(
    store: Store, tmp_path: Path, evil: str
) -> None:
    ref, sender = reference(tmp_path), Sender()
    versions = {name: "1.0" for name in NAMES[:400]}
    for at in (T0, T0 + 1):
        record = sender.record(at, versions)
        stats = store.write([record])
        ref.write([full(record)])
        assert stats.sets_ranged == 0  # the first list; then one the store would alter
        assert history(store) == history(ref)
        versions[evil] = "1.0"  # into a changed range of the list the store holds exactly
    ref.close()


def test_two_lists_of_one_vm_in_one_batch_are_diffed_in_full(store: Store, tmp_path: Path) -> None:
    ref, sender = reference(tmp_path), Sender()
    versions = {name: "1.0" for name in NAMES[:400]}
    batches: list[list[Record]] = [[sender.record(T0, versions)], []]
    for step in (1, 2):
        versions[f"lib{step}"] = f"{step + 1}.0"
        batches[1].append(sender.record(T0 + step, versions))
    for batch in batches:
        stats = store.write(batch)
        ref.write([full(r) for r in batch if isinstance(r, InventoryObserved)])
    assert stats.sets_ranged == 0
    assert history(store) == history(ref)
    ref.close()


def test_postgresql_compares_identities_by_code_point() -> None:
    facts = packages({name: "1.0" for name in NAMES[:400]})
    ranges, items, starts = split(facts, None)
    size = RANGE_DIGEST_BYTES
    other = ranges.digests[: 3 * size] + bytes(2 * size) + ranges.digests[5 * size :]
    change = delta(SetRanges(b"", ranges.bounds, other), ranges, items, starts)
    assert change.ranges == (3, 4)
    clause = _in_ranges(InventoryItem.__table__.c.identity, change, "postgresql")
    sql = str(clause.compile(dialect=postgresql.dialect()))  # type: ignore[no-untyped-call]
    column = '(inventory_items.identity COLLATE "C")'
    assert f"{column} >= " in sql and f"{column} < " in sql  # two adjacent ranges: one span
    assert " OR " not in sql
