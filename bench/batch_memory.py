"""Writer benchmark: peak memory of `Store.write` by batch size (not a test).

The writer cuts its batches at `storage.writer.MAX_BATCH_ITEMS` rows. A first inventory
builds a row dict, an item and its strings per package while the batch is applied, so the
batch size sets the writer's transient peak. Each size runs in a fresh process (peak RSS
only grows), writing the same first inventories (VMs × packages) to an empty SQLite
database, and prints the peak RSS growth and the CPU time, side by side.

    .venv/bin/python bench/batch_memory.py [--vms 400] [--packages 1500] [--sizes 200000,50000]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from storage.records import InventoryObserved, VmRef
from storage.repository import Store

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `bench` when run as a script

from bench.store_diff import packages  # the same package lists as the diff bench


def one(vms: int, count: int, batch_rows: int) -> None:
    """In this process: write the first inventories in batches of about `batch_rows` rows."""
    per_batch = max(1, batch_rows // count)
    refs = [
        VmRef(key=f"bench/vm{i}", name=f"vm{i}", hypervisor="bench", protocol="qga", uuid=None)
        for i in range(vms)
    ]
    with tempfile.TemporaryDirectory() as directory:
        store = Store(f"sqlite:///{Path(directory) / 'bench.db'}")
        store.upgrade()
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        cpu = time.process_time()
        for start in range(0, vms, per_batch):
            batch = [
                InventoryObserved(ref, 1.0, packages(start + i, count, 0, 0))
                for i, ref in enumerate(refs[start : start + per_batch])
            ]
            store.write(batch)
            del batch
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(
            f"batches of {per_batch * count:>7,} rows: peak RSS +{(peak - base) / 1024:5.0f} MiB, "
            f"{time.process_time() - cpu:5.1f} s CPU for {vms * count:,} rows"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=400)
    parser.add_argument("--packages", type=int, default=1500)
    parser.add_argument("--sizes", default="200000,50000", help="batch sizes in rows")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a child's batch size
    args = parser.parse_args()
    if args.one is not None:
        one(args.vms, args.packages, args.one)
        return
    for size in (int(s) for s in args.sizes.split(",")):
        command = [sys.executable, __file__, "--vms", str(args.vms)]
        command += ["--packages", str(args.packages), "--one", str(size)]
        subprocess.run(command, check=True)


if __name__ == "__main__":
    main()
