"""Range digests: a changed package list names the ranges that changed, and their items."""

from __future__ import annotations

from collector.facts import FactKind, FactSet, Package, fact_set, pairs_digest
from collector.ranges import RANGES, delta, range_of, split


def packages(versions: dict[str, str]) -> FactSet:
    return fact_set(
        FactKind.PACKAGES,
        [Package(name=n, version=v, manager="dpkg", arch="amd64") for n, v in versions.items()],
    )


BASE = {f"pkg{i:04d}": "1.0" for i in range(1600)}


def test_split_caches_the_sets_digest_computed_from_the_same_items() -> None:
    facts = packages(BASE)
    ranges, items, _ = split(facts, None)
    expected = pairs_digest((f.identity(), f.value()) for f in facts.items)
    assert ranges.digest == facts.digest() == expected
    assert [identity for identity, _, _ in items] == sorted(f.identity() for f in facts.items)


def test_bounds_are_ascending_quantiles_and_ranges_partition_the_items() -> None:
    ranges, items, starts = split(packages(BASE), None)
    assert len(ranges.bounds) == RANGES - 1
    assert list(ranges.bounds) == sorted(set(ranges.bounds))
    sizes = [b - a for a, b in zip(starts, [*starts[1:], len(items)], strict=True)]
    assert sum(sizes) == len(items) and min(sizes) == max(sizes) == len(items) // RANGES
    for index, start in enumerate(starts):
        assert range_of(items[start][0], ranges.bounds) == index


def test_a_few_changes_name_only_their_ranges_and_carry_their_items() -> None:
    before, _, _ = split(packages(BASE), None)
    changed = dict(BASE)
    changed["pkg0005"] = "2.0"  # upgraded
    del changed["pkg0900"]  # removed
    changed["pkg1599a"] = "1.0"  # installed
    after_facts = packages(changed)
    after, items, starts = split(after_facts, before.bounds)
    change = delta(before, after, items, starts)
    expected = sorted({range_of(f"{n}:amd64", before.bounds) for n in ("pkg0005", "pkg0900")})
    expected.append(RANGES - 1)
    assert change.ranges == tuple(expected)
    assert change.previous == before.digest and change.bounds == before.bounds
    in_ranges = sorted(
        f.identity() for f in after_facts.items if range_of(f.identity(), before.bounds) in expected
    )
    assert [identity for identity, _, _ in change.items] == in_ranges
    assert all(value == fact.value() for _, value, fact in change.items)


def test_the_bounds_stay_those_of_the_first_list() -> None:
    before, _, _ = split(packages(BASE), None)
    smaller = {name: "1.0" for name in list(BASE)[:100]}
    after, items, starts = split(packages(smaller), before.bounds)
    assert after.bounds == before.bounds
    assert delta(before, after, items, starts).ranges == tuple(range(1, RANGES))


def test_small_and_empty_sets_split_without_empty_bounds() -> None:
    empty, items, starts = split(fact_set(FactKind.PACKAGES, []), None)
    assert empty.bounds == () and items == [] and starts == [0]
    few, _, _ = split(packages({"a": "1", "b": "1"}), None)
    assert few.bounds == ("b:amd64",)
