"""Many collectors, one PostgreSQL: the database side of a fleet at the default cadences.

Each collector is a process with its own `Store`, writing exactly the records a guestwatch
service emits after its digest check (heartbeats, successful polls, samples, and inventory
sets only when they changed) for its share of VMs, in one transaction per half second as the
writer does. Polling itself is not simulated here (bench/qga_round.py measures that); this
measures what PostgreSQL sustains. Phases: seed (every VM's first inventory), then a steady
phase of `--minutes` with drift (package upgrades, installs, removals; IP changes; logins).

Prints rows/s and transactions/s sustained, write latency p50/p99, and database size per VM
(after seeding) and its growth per VM per day (from the steady phase).

    .venv/bin/python bench/scaleout.py --url postgresql+psycopg://... \\
        [--collectors 10] [--vms 10000] [--packages 1500] [--minutes 5]

Without --url a throwaway cluster is created (initdb/pg_ctl, as `postgres` when root).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from collector.facts import (
    Cpus,
    FactKind,
    FactSet,
    Filesystem,
    Hostname,
    NetAddress,
    NetInterface,
    OsInfo,
    Package,
    UserSession,
    fact_set,
)  # fmt: skip
from storage.records import (
    HeartbeatSeen,
    InventoryObserved,
    KindSucceeded,
    Record,
    Sample,
    SamplesObserved,
    VmRef,
)  # fmt: skip
from storage.repository import Store

FLUSH_SECONDS = 0.5  # the writer's max_delay
CADENCES = {  # the service's defaults, seconds
    "heartbeat": 5.0, "users": 10.0, "memory": 60.0, "filesystems": 60.0, "system": 120.0,
    "packages": 3600.0,
}  # fmt: skip
# Default drift per VM per hour (the simulator's DriftRates per step of one hour).
UPGRADES_PER_HOUR, INSTALLS_PER_HOUR, REMOVALS_PER_HOUR = 3.0, 0.3, 0.2
IP_CHANGES_PER_HOUR, LOGINS_PER_HOUR = 0.02, 0.2


class SimVm:
    """One VM's inventory as sets of facts, drifting like the simulator's guests."""

    def __init__(self, ref: VmRef, rng: random.Random, packages: int) -> None:
        self.ref = ref
        self.rng = rng
        self.packages = {
            f"pkg{i:05d}": f"{rng.randint(1, 9)}.{rng.randint(0, 30)}-{rng.randint(1, 5)}"
            for i in range(packages)
        }
        self.next_package = packages
        self.address = f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(2, 254)}"
        self.users: list[UserSession] = []
        self.disks = rng.randint(1, 6)
        self.nics = rng.randint(1, 4)
        self.phase = rng.uniform(0, 1)

    def package_set(self) -> FactSet:
        return fact_set(FactKind.PACKAGES, (
            Package(name=n, version=v, arch="amd64", manager="dpkg")
            for n, v in self.packages.items()
        ))  # fmt: skip

    def system_sets(self) -> list[FactSet]:
        name = self.ref.name
        return [
            fact_set(FactKind.OS, [OsInfo(id="debian", name="Debian GNU/Linux",
                                          pretty_name="Debian GNU/Linux 12 (bookworm)",
                                          version_id="12", kernel_release="6.1.0-28-amd64",
                                          machine="x86_64")]),
            fact_set(FactKind.HOSTNAME, [Hostname(name=name)]),
            fact_set(FactKind.CPUS, [Cpus(online=2, total=2)]),
            fact_set(FactKind.NETWORK, [
                NetInterface(name=f"eth{i}", mac=f"52:54:00:00:{i:02x}:01",
                             addresses=(NetAddress(self.address, 24, "ipv4"),) if i == 0 else ())
                for i in range(self.nics)
            ]),
        ]  # fmt: skip

    def filesystem_set(self) -> FactSet:
        return fact_set(FactKind.FILESYSTEMS, [
            Filesystem(mountpoint="/" if i == 0 else f"/data{i}", fstype="ext4",
                       size_bytes=50 << 30, used_bytes=self.rng.randint(1 << 30, 40 << 30))
            for i in range(self.disks)
        ])  # fmt: skip

    def drift(self, hours: float) -> set[str]:
        """Apply the expected drift of `hours`; return the kinds that changed."""
        changed: set[str] = set()
        rng = self.rng
        for _ in range(_events(rng, UPGRADES_PER_HOUR * hours)):
            name = rng.choice(list(self.packages))
            self.packages[name] += "+u1"
            changed.add("packages")
        for _ in range(_events(rng, INSTALLS_PER_HOUR * hours)):
            self.packages[f"pkg{self.next_package:05d}"] = "1.0-1"
            self.next_package += 1
            changed.add("packages")
        for _ in range(_events(rng, REMOVALS_PER_HOUR * hours)):
            self.packages.pop(rng.choice(list(self.packages)), None)
            changed.add("packages")
        if _events(rng, IP_CHANGES_PER_HOUR * hours):
            self.address = f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(2, 254)}"
            changed.add("system")
        if _events(rng, LOGINS_PER_HOUR * hours):
            if self.users and rng.random() < 0.5:
                self.users.pop()
            else:
                self.users.append(UserSession(name="ops", login_time=time.time()))
            changed.add("users")
        return changed


def _events(rng: random.Random, expected: float) -> int:
    whole = int(expected)
    return whole + (1 if rng.random() < expected - whole else 0)


def collector(index: int, url: str, vms: int, packages: int, seconds: float,
              queue: Any) -> None:  # fmt: skip
    rng = random.Random(index)
    host = f"hv-{index:02d}"
    fleet = [SimVm(VmRef(key=f"{host}/vm{i:05d}", name=f"vm{i:05d}", hypervisor=host,
                         protocol="qga"), rng, packages) for i in range(vms)]  # fmt: skip
    store = Store(url)
    seed_started = time.perf_counter()
    for chunk in range(0, vms, 50):  # seed: first inventory, in writer-sized batches
        records: list[Record] = []
        now = time.time()
        for vm in fleet[chunk : chunk + 50]:
            for facts in (vm.package_set(), vm.filesystem_set(), *vm.system_sets()):
                records.append(InventoryObserved(vm.ref, now, facts))
        store.write(records)
    queue.put(("seeded", index, time.perf_counter() - seed_started))
    # Steady phase.
    latencies: list[float] = []
    rows = transactions = 0
    started = time.time()
    tick = 0
    while time.time() - started < seconds:
        tick_start = time.time()
        t0, t1 = tick * FLUSH_SECONDS, (tick + 1) * FLUSH_SECONDS
        records = []
        for vm in fleet:
            offset = vm.phase
            due = {k for k, c in CADENCES.items()
                   if int((t1 / c) + offset) > int((t0 / c) + offset)}  # fmt: skip
            if not due:
                continue
            now = time.time()
            if "heartbeat" in due:
                records.append(HeartbeatSeen(vm.ref, now))
            changed = vm.drift(FLUSH_SECONDS / 3600.0)
            for kind in due - {"heartbeat"}:
                records.append(KindSucceeded(vm.ref, now, FactKind.PACKAGES if kind == "packages"
                                             else FactKind.OS))  # fmt: skip
            if "memory" in due:
                records.append(SamplesObserved(vm.ref, now, tuple(
                    Sample(m, "", float(rng.randint(1, 1 << 33))) for m in
                    ("memory_total_bytes", "memory_available_bytes", "memory_free_bytes",
                     "swap_free_bytes"))))  # fmt: skip
            if "filesystems" in due:
                fs = vm.filesystem_set()
                records.append(SamplesObserved(vm.ref, now, tuple(
                    Sample("filesystem_used_bytes", f.mountpoint, float(f.used_bytes or 0))
                    for f in fs.items if isinstance(f, Filesystem))))  # fmt: skip
            if "system" in due:
                records.append(SamplesObserved(vm.ref, now, tuple(
                    Sample(m, f"eth{i}", float(rng.randint(0, 1 << 40)))
                    for i in range(vm.nics)
                    for m in ("network_receive_bytes", "network_transmit_bytes"))))  # fmt: skip
            # A changed set is sent when its cadence comes round (the digest differs then).
            if "packages" in changed:
                records.append(InventoryObserved(vm.ref, now, vm.package_set()))
            if "system" in changed:
                records.extend(InventoryObserved(vm.ref, now, f) for f in vm.system_sets())
            if "users" in changed:
                records.append(InventoryObserved(vm.ref, now, fact_set(FactKind.USERS,
                                                                       vm.users)))  # fmt: skip
        if records:
            w0 = time.perf_counter()
            stats = store.write(records)
            latencies.append(time.perf_counter() - w0)
            transactions += 1
            rows += (stats.items_opened + stats.items_closed + stats.events + stats.samples
                     + stats.vms)  # fmt: skip
        tick += 1
        time.sleep(max(0.0, FLUSH_SECONDS - (time.time() - tick_start)))
    store.close()
    queue.put(("steady", index, rows, transactions, time.time() - started, latencies))


def db_size(url: str) -> int:
    engine = create_engine(url)
    with engine.connect() as conn:
        size = int(conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one())
    engine.dispose()
    return size


def throwaway_cluster() -> tuple[str, Path, list[str]]:
    pg_bin = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)))
    root = Path(tempfile.mkdtemp(prefix="gw-scale-"))
    sock = root / "sock"
    sock.mkdir()
    as_pg: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sock, "postgres")
        as_pg = ["runuser", "-u", "postgres", "--"]
    data = root / "data"
    subprocess.run([*as_pg, str(pg_bin / "initdb"), "-D", str(data), "-A", "trust", "-U",
                    "postgres"], check=True, capture_output=True)  # fmt: skip
    ctl = [*as_pg, str(pg_bin / "pg_ctl"), "-D", str(data), "-w", "-l", str(root / "log")]
    subprocess.run([*ctl, "-o", f"-k {sock} -c listen_addresses= -c max_connections=50",
                    "start"], check=True, capture_output=True)  # fmt: skip
    admin = create_engine(f"postgresql+psycopg://postgres@/postgres?host={sock}",
                          isolation_level="AUTOCOMMIT")  # fmt: skip
    with admin.connect() as conn:
        conn.execute(text('CREATE DATABASE "scale"'))
    admin.dispose()
    return f"postgresql+psycopg://postgres@/scale?host={sock}", root, ctl


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="PostgreSQL URL (default: a throwaway local cluster)")
    parser.add_argument("--collectors", type=int, default=10)
    parser.add_argument("--vms", type=int, default=10_000, help="VMs per collector")
    parser.add_argument("--packages", type=int, default=1500, help="packages per VM")
    parser.add_argument("--minutes", type=float, default=5.0, help="steady phase")
    args = parser.parse_args()

    cluster: tuple[Path, list[str]] | None = None
    url = args.url
    if url is None:
        url, root, ctl = throwaway_cluster()
        cluster = (root, ctl)
    try:
        store = Store(url)
        store.upgrade()
        store.close()
        queue: Any = mp.Queue()
        procs = [mp.Process(target=collector, args=(i, url, args.vms, args.packages,
                                                     args.minutes * 60, queue))
                 for i in range(args.collectors)]  # fmt: skip
        for p in procs:
            p.start()
        seeds = [queue.get() for _ in procs]
        size_seeded = db_size(url)
        steady = [queue.get() for _ in procs]
        for p in procs:
            p.join()
        size_end = db_size(url)
    finally:
        if cluster is not None:
            subprocess.run([*cluster[1], "-m", "fast", "stop"], check=False, capture_output=True)
            shutil.rmtree(cluster[0], ignore_errors=True)

    total_vms = args.collectors * args.vms
    duration = statistics.mean(s[4] for s in steady)
    rows = sum(s[2] for s in steady)
    transactions = sum(s[3] for s in steady)
    latencies = sorted(x for s in steady for x in s[5])
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else 0.0
    p50 = statistics.median(latencies) if latencies else 0.0
    print(f"scaleout: {args.collectors} collectors × {args.vms} VMs × {args.packages} packages, "
          f"steady phase {duration:.0f} s, {os.cpu_count()} cpus")  # fmt: skip
    print(f"seed: {max(s[2] for s in seeds):.1f} s (slowest collector), "
          f"{size_seeded / total_vms / 1024:.1f} KiB per VM after seeding")  # fmt: skip
    print(f"sustained: {rows / duration:,.0f} rows/s, {transactions / duration:.1f} transactions/s")
    print(f"write latency: p50 {1000 * p50:.1f} ms, p99 {1000 * p99:.1f} ms")
    growth = (size_end - size_seeded) / total_vms * (86400 / duration)
    print(f"database growth: {growth / 1024:.1f} KiB per VM per day (at the default drift)")


if __name__ == "__main__":
    main()
