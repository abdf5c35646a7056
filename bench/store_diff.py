"""Writer benchmark: what a changed package list costs `Store.write` in steady state (not a test).

At the simulator's default drift every guest upgrades a few packages a minute, so at a 120 s
packages cadence nearly every poll brings a changed list, and the writer diffs it against the
VM's open rows: it loads the whole list (a thousand-odd rows) to write a handful. This stores
N VMs with P packages each on an empty SQLite database, then writes rounds of changed lists
(U upgrades, one install and one removal per VM) and prints the writer's CPU per changed list,
per package in the list, and what that comes to for 10,000 VMs polled every 120 s.

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
from storage.records import InventoryObserved, VmRef
from storage.repository import Store


@contextlib.contextmanager
def bench_store(vms: int) -> Iterator[tuple[Store, list[VmRef]]]:
    """A migrated SQLite store in a temporary directory, and references to `vms` VMs."""
    with tempfile.TemporaryDirectory() as directory:
        store = Store(f"sqlite:///{Path(directory) / 'bench.db'}")
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
    facts = fact_set(FactKind.PACKAGES, items)
    facts.digest()  # the runner computed it (to see that the list changed) before sending
    return facts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=200)
    parser.add_argument("--packages", type=int, default=1500)
    parser.add_argument("--upgrades", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    with bench_store(args.vms) as (store, refs):
        started = time.monotonic()
        store.write(
            [
                InventoryObserved(ref, started, packages(i, args.packages, 0, 0))
                for i, ref in enumerate(refs)
            ]
        )
        print(f"stored {args.vms} VMs × {args.packages} packages")
        per_list: list[float] = []
        for round_ in range(1, args.rounds + 1):
            records = [
                InventoryObserved(
                    ref, started + round_, packages(i, args.packages, round_, args.upgrades)
                )
                for i, ref in enumerate(refs)
            ]
            cpu = time.process_time()
            store.write(records)
            per_list.append((time.process_time() - cpu) / args.vms)
        median = statistics.median(per_list)
        changed = args.upgrades * 2 + 2  # each upgrade closes and opens; plus the swap
        print(
            f"changed list ({args.upgrades} upgrades, 1 install, 1 removal; {changed} row writes): "
            f"{median * 1e3:.2f} ms CPU per list (median of {args.rounds} rounds), "
            f"{median / args.packages * 1e6:.2f} µs per package in the list"
        )
        print(f"at 10,000 VMs and a 120 s packages cadence: {median * 10_000 / 120:.2f} cores")


if __name__ == "__main__":
    main()
