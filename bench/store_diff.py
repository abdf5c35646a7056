"""Writer benchmark: what a changed package list costs `Store.write` in steady state (not a test).

At the simulator's default drift every guest upgrades a few packages a minute, so at a 120 s
packages cadence nearly every poll brings a changed list, and the writer diffs it against the
VM's open rows: it loads the whole list (a thousand-odd rows) to write a handful. This stores
N VMs with P packages each on an empty SQLite database, then writes rounds of changed lists
(U upgrades, one install and one removal per VM) and prints the CPU per changed list and what
that comes to for 10,000 VMs polled every 120 s, side by side: diffed in full (the runner
digests the list, the store loads all its rows) and by ranges (the runner splits it,
`collector.ranges`, and the store loads only the changed ranges' rows).

    .venv/bin/python bench/store_diff.py [--vms 200] [--packages 1500] [--upgrades 3] [--rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from collector.facts import FactKind, FactSet, Package, fact_set
from collector.ranges import SetRanges, delta, split
from storage.records import InventoryObserved, VmRef
from storage.repository import Store


@contextlib.contextmanager
def bench_store(vms: int, name: str = "bench") -> Iterator[tuple[Store, list[VmRef]]]:
    """A migrated SQLite store in a temporary directory, and references to `vms` VMs."""
    with tempfile.TemporaryDirectory() as directory:
        store = Store(f"sqlite:///{Path(directory) / f'{name}.db'}")
        store.upgrade()
        try:
            yield (
                store,
                [
                    VmRef(key=f"bench/vm{i}", name=f"vm{i}", hypervisor="bench", protocol="qga")
                    for i in range(vms)
                ],
            )
        finally:
            store.close()


def packages(vm: int, count: int, round_: int, upgrades: int) -> FactSet:
    """VM `vm`'s list at `round_`: `upgrades` versions bumped, one package swapped per round."""
    items = []
    for i in range(count):
        bumps = round_ if i < upgrades else 0
        items.append(
            Package(name=f"pkg{vm % 7}-{i}", version=f"1.{bumps}-{i % 13}", manager="dpkg")
        )
    items[-1] = Package(name=f"extra-{round_}", version="1.0", manager="dpkg")
    return fact_set(FactKind.PACKAGES, items)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=200)
    parser.add_argument("--packages", type=int, default=1500)
    parser.add_argument("--upgrades", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    with (
        bench_store(args.vms, "full") as (full, refs),
        bench_store(args.vms, "ranged") as (
            ranged,
            _,
        ),
    ):
        started = time.monotonic()
        known: list[SetRanges] = []
        first = []
        for i, ref in enumerate(refs):
            facts = packages(i, args.packages, 0, 0)
            known.append(split(facts, None)[0])
            first.append(InventoryObserved(ref, started, facts))
        full.write(first)
        ranged.write(first)
        print(f"stored {args.vms} VMs × {args.packages} packages, twice")
        cpu: dict[str, list[float]] = {"full": [], "ranged": [], "digest": [], "split": []}
        for round_ in range(1, args.rounds + 1):
            lists = [packages(i, args.packages, round_, args.upgrades) for i in range(args.vms)]
            again = [packages(i, args.packages, round_, args.upgrades) for i in range(args.vms)]
            # What the runner does to see that a list changed: its digest, or its split.
            started_cpu = time.process_time()
            for facts in lists:
                facts.digest()
            cpu["digest"].append((time.process_time() - started_cpu) / args.vms)
            started_cpu = time.process_time()
            deltas = []
            for i, facts in enumerate(again):
                current, items, starts = split(facts, known[i].bounds)
                deltas.append(delta(known[i], current, items, starts))
                known[i] = current
            cpu["split"].append((time.process_time() - started_cpu) / args.vms)
            for name, store, records in (
                (
                    "full",
                    full,
                    [
                        InventoryObserved(r, started + round_, f)
                        for r, f in zip(refs, lists, strict=True)
                    ],
                ),
                (
                    "ranged",
                    ranged,
                    [
                        InventoryObserved(r, started + round_, f, d)
                        for r, f, d in zip(refs, again, deltas, strict=True)
                    ],
                ),
            ):
                started_cpu = time.process_time()
                store.write(records)
                cpu[name].append((time.process_time() - started_cpu) / args.vms)
        changed = args.upgrades * 2 + 2  # each upgrade closes and opens; plus the swap
        median = {name: statistics.median(values) for name, values in cpu.items()}
        print(
            f"changed list ({args.upgrades} upgrades, 1 install, 1 removal; {changed} row "
            f"writes), median of {args.rounds} rounds, ms CPU per list:"
        )
        for store_side, runner_side in (("full", "digest"), ("ranged", "split")):
            total = median[store_side] + median[runner_side]
            print(
                f"  {store_side:6s}: store {median[store_side] * 1e3:.2f} "
                f"+ runner {runner_side} {median[runner_side] * 1e3:.2f} = {total * 1e3:.2f}; "
                f"at 10,000 VMs and a 120 s packages cadence: {total * 10_000 / 120:.2f} cores"
            )
        ratio = (median["ranged"] + median["split"]) / (median["full"] + median["digest"])
        print(f"  ranged / full: {ratio:.2f}")


if __name__ == "__main__":
    main()
