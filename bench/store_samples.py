"""Writer benchmark: what a steady fleet's measurements cost `Store.write` (not a test).

Every memory, filesystem and system poll sends its measurements (memory bytes, filesystem used
and size, interface counters) to the samples table: about 15 rows per VM every 120 s, 1,250
rows a second at 10,000 VMs, the biggest of the writer's steady inserts. This writes batches
shaped like the writer's (half a second of a 10,000-VM fleet's sample records, a memory, a
filesystem or a network poll's each) to an SQLite database and prints the writer's CPU per
sample row, and what that comes to at 10,000 VMs.

    .venv/bin/python bench/store_samples.py [--vms 10000] [--batches 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `bench` when run as a script

from bench.store_diff import bench_store
from storage.records import HeartbeatSeen, Sample, SamplesObserved

#: Sample records per batch: a 10,000-VM fleet's memory, filesystem and system polls in the
#: writer's half-second batching window (250 polls a second).
RECORDS_PER_BATCH = 125


MEMORY_METRICS = (
    "memory_total_bytes",
    "memory_available_bytes",
    "memory_free_bytes",
    "swap_free_bytes",
)


def poll_samples(group: int, vm: int, round_: int) -> tuple[Sample, ...]:
    """One poll's measurements: memory (4), three filesystems (6) or two NICs (4)."""
    base = float(vm * 1_000_003 + round_ * 4096)
    if group == 0:
        return tuple(Sample(metric, "", base + i) for i, metric in enumerate(MEMORY_METRICS))
    if group == 1:
        return tuple(
            Sample(metric, mount, base + i)
            for i, mount in enumerate(("/", "/boot", "/var"))
            for metric in ("filesystem_used_bytes", "filesystem_size_bytes")
        )
    return tuple(
        Sample(metric, nic, base + i)
        for i, nic in enumerate(("eth0", "eth1"))
        for metric in ("network_receive_bytes", "network_transmit_bytes")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=10_000)
    parser.add_argument("--batches", type=int, default=20)
    args = parser.parse_args()
    with bench_store(args.vms) as (store, refs):
        started = time.time()
        store.write([HeartbeatSeen(ref, started) for ref in refs])  # the fleet is stored
        per_row: list[float] = []
        for batch in range(-2, args.batches):  # two to warm up
            records = []
            for n in range(RECORDS_PER_BATCH):
                i = (batch * RECORDS_PER_BATCH + n) % args.vms
                at = started + batch * 0.5 + n * 0.004
                records.append(SamplesObserved(refs[i], at, poll_samples(i % 3, i, batch)))
            rows = sum(len(r.samples) for r in records)
            cpu = time.process_time()
            store.write(records)
            if batch >= 0:
                per_row.append((time.process_time() - cpu) / rows)
        median = statistics.median(per_row)
        print(
            f"samples: {median * 1e6:.2f} µs CPU per row (median of {args.batches} batches "
            f"of {RECORDS_PER_BATCH} records, {rows} rows)"
        )
        print(f"at 10,000 VMs (1,250 rows a second): {median * 1250 * 100:.2f}% of a core")


if __name__ == "__main__":
    main()
