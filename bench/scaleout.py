"""Many collectors, one PostgreSQL: the database side of a fleet at the default cadences.

Each collector is a process with its own `Store`, writing exactly the records a guestwatch
service emits after its digest check (last-seen heartbeats and per-kind successes at most once
five minutes per VM and kind as `collector.runner` stores them, samples, and inventory sets only
when they changed) for its share of VMs, in one transaction per half second as the
writer does (at most 5,000 records each). Polling itself is not simulated here
(bench/qga_round.py measures that); this measures what PostgreSQL sustains.

Phases:
- seed: every VM's first inventory, written by the fast seed of bench/scaleseed.py (binary
  COPY FREEZE in one transaction, secondary indexes rebuilt after, VACUUM ANALYZE): the rows
  `Store.write` would have written, checked against `Store.write` for a few VMs in a separate
  database, and the schema checked against Alembic head. Each collector process then checks
  that its in-memory fleet has the seeded digests.
- steady: `--minutes` at the default cadences through the real `Store.write`. VMs are bucketed
  by the tick their cadences come round, so a tick costs only the VMs that are due. Drift
  (package upgrades, installs, removals; IP changes; logins) at the simulator's default rates
  per hour is drawn when a VM's poll of the kind comes round, for the interval since its last
  poll, and a changed set is sent then (as the service's digest check does): steady state from
  the first tick. A collector that falls behind writes the ticks it missed in one batch (a
  writer's queue grows the same way); the phase ends after `--minutes` of wall time in any
  case, and the worst lag behind schedule is printed.

Prints the seed time and rate, rows/s and transactions/s sustained, write latency p50/p99, the
CPU seconds of the generator processes (making records, and `Store.write`'s client side) next
to PostgreSQL's (postmaster and its children, from /proc) and the whole machine's, database
size per VM after seeding, and its growth per VM per day (from the steady phase).

    .venv/bin/python bench/scaleout.py [--url postgresql+psycopg://...] \\
        [--collectors 10] [--vms 10000] [--packages 1500] [--minutes 5] [--workdir /var/tmp]

Without --url a throwaway cluster is created under --workdir (initdb/pg_ctl, as `postgres`
when root) and removed at the end, also on Ctrl-C or SIGTERM; the full scale needs about 40 GB
there. Its settings (`SETTINGS`, printed) are what a dedicated server of this size would use
on a 24 GiB machine: shared_buffers 2GB, effective_cache_size 16GB, maintenance_work_mem 1GB,
work_mem 16MB, max_wal_size 16GB, checkpoint_timeout 15min, checkpoint_completion_target 0.9,
random_page_cost 1.1 (SSD), wal_level replica, synchronous_commit on, fsync on. The seed runs
with wal_level minimal (as a restore into a fresh server before replication is set up) and the
cluster is restarted with wal_level replica for the steady phase. With --url the database must
be empty (migrated or not) and the server's own settings apply; the seed is faster as a
superuser (foreign keys not re-validated).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `bench` when run as a script

from bench.scaleseed import (
    SimVm,
    build_fleet,
    chunked,
    fast_seed,
    seeded_digest_mismatches,
    verify_schema,
    verify_seed,
)
from collector.facts import GROUP_KINDS, FactKind, PollGroup, UserSession, fact_set
from collector.runner import STORE_TIMESTAMPS_EVERY
from storage.records import (
    HeartbeatSeen,
    InventoryObserved,
    KindSucceeded,
    Record,
    Sample,
    SamplesObserved,
)  # fmt: skip
from storage.repository import Store

FLUSH_SECONDS = 0.5  # the writer's max_delay
CADENCES = {  # the service's defaults, seconds
    "heartbeat": 5.0, "users": 10.0, "memory": 60.0, "filesystems": 60.0, "system": 120.0,
    "packages": 3600.0,
}  # fmt: skip
MAX_BATCH = 5000  # the writer's max_batch
#: How often the service stores a VM's last-seen heartbeat and each kind's last success.
STORED = {cadence: max(interval, STORE_TIMESTAMPS_EVERY) for cadence, interval in CADENCES.items()}
# Default drift per VM per hour (the simulator's DriftRates per step of one hour).
UPGRADES_PER_HOUR, INSTALLS_PER_HOUR, REMOVALS_PER_HOUR = 3.0, 0.3, 0.2
IP_CHANGES_PER_HOUR, LOGINS_PER_HOUR = 0.02, 0.2


def _events(rng: random.Random, expected: float) -> int:
    whole = int(expected)
    return whole + (1 if rng.random() < expected - whole else 0)


# ---------------------------------------------------------------------- the steady phase


def drift_users(vm: SimVm, rng: random.Random, hours: float) -> bool:
    if not _events(rng, LOGINS_PER_HOUR * hours):
        return False
    if vm.users and rng.random() < 0.5:
        vm.users.pop()
    else:
        vm.users.append(UserSession(name="ops", login_time=time.time()))
    return True


def drift_system(vm: SimVm, rng: random.Random, hours: float) -> bool:
    if not _events(rng, IP_CHANGES_PER_HOUR * hours):
        return False
    vm.new_address(rng)
    return True


def drift_packages(vm: SimVm, rng: random.Random, hours: float) -> bool:
    upgrades = _events(rng, UPGRADES_PER_HOUR * hours)
    installs = _events(rng, INSTALLS_PER_HOUR * hours)
    removals = _events(rng, REMOVALS_PER_HOUR * hours)
    for _ in range(upgrades):
        vm.upgrade(rng)
    for _ in range(installs):
        vm.install()
    for _ in range(removals):
        vm.remove(rng)
    return bool(upgrades or installs or removals)


def succeeded(vm: SimVm, now: float, group: PollGroup) -> list[Record]:
    """One success per kind of the group, as the runner stores them (every few minutes)."""
    return [KindSucceeded(vm.ref, now, kind) for kind in GROUP_KINDS[group]]


class Ticks:
    """The records of one collector's fleet, tick by tick: each VM sits in one slot per
    cadence (its phase), so a tick visits only the VMs that are due."""

    def __init__(self, fleet: list[SimVm], rng: random.Random) -> None:
        self.rng = rng
        self.slots: dict[str, list[list[SimVm]]] = {}
        for cadence, interval in [
            *CADENCES.items(),
            *(("stored " + c, i) for c, i in STORED.items()),
        ]:
            ticks = round(interval / FLUSH_SECONDS)
            slots: list[list[SimVm]] = [[] for _ in range(ticks)]
            for vm in fleet:
                slots[int(((1.0 - vm.phase) % 1.0) * ticks) % ticks].append(vm)
            self.slots[cadence] = slots

    def due(self, cadence: str, tick: int) -> list[SimVm]:
        slots = self.slots[cadence]
        return slots[tick % len(slots)]

    def records(self, tick: int) -> list[Record]:
        rng, now = self.rng, time.time()
        records: list[Record] = [
            HeartbeatSeen(vm.ref, now) for vm in self.due("stored heartbeat", tick)
        ]
        for group in PollGroup:
            if group is not PollGroup.HEARTBEAT:
                for vm in self.due("stored " + group.value, tick):
                    records.extend(succeeded(vm, now, group))
        for vm in self.due("users", tick):
            if drift_users(vm, rng, CADENCES["users"] / 3600):
                records.append(InventoryObserved(vm.ref, now, fact_set(FactKind.USERS, vm.users)))
        for vm in self.due("memory", tick):
            records.append(SamplesObserved(vm.ref, now, tuple(
                Sample(m, "", float(rng.randint(1, 1 << 33)))
                for m in ("memory_total_bytes", "memory_available_bytes", "memory_free_bytes",
                          "swap_free_bytes"))))  # fmt: skip
        for vm in self.due("filesystems", tick):
            records.append(SamplesObserved(vm.ref, now, tuple(
                Sample("filesystem_used_bytes", m, float(rng.randint(1 << 30, 40 << 30)))
                for m in vm.mountpoints())))  # fmt: skip
        for vm in self.due("system", tick):
            records.append(SamplesObserved(vm.ref, now, tuple(
                Sample(m, f"eth{i}", float(rng.randint(0, 1 << 40)))
                for i in range(vm.nics)
                for m in ("network_receive_bytes", "network_transmit_bytes"))))  # fmt: skip
            if drift_system(vm, rng, CADENCES["system"] / 3600):
                records.extend(InventoryObserved(vm.ref, now, f) for f in vm.system_sets())
        for vm in self.due("packages", tick):
            if drift_packages(vm, rng, CADENCES["packages"] / 3600):
                records.append(InventoryObserved(vm.ref, now, vm.package_set()))
        return records


@dataclass
class Steady:
    rows: int = 0
    transactions: int = 0
    records: int = 0
    seconds: float = 0.0
    lag: float = 0.0  # how far behind schedule the last tick was written
    cpu_records: float = 0.0  # making the records
    cpu_write: float = 0.0  # Store.write's client side (SQLAlchemy, psycopg)
    latencies: list[float] = field(default_factory=list)


def run_steady(store: Store, fleet: list[SimVm], index: int, seconds: float) -> Steady:
    """Write the fleet's records tick by tick for `seconds` of wall time (a fixed duration even
    when the machine cannot keep up: what was not written by then is the final lag)."""
    ticks = Ticks(fleet, random.Random(1000 + index))
    out = Steady()
    started = time.time()
    tick = 0  # the next tick to write
    while (elapsed := time.time() - started) < seconds:
        upto = int(elapsed / FLUSH_SECONDS)
        if upto < tick:  # the next tick has not come yet
            time.sleep(min(tick * FLUSH_SECONDS, seconds) - elapsed)
            continue
        cpu = time.process_time()
        records: list[Record] = []
        for k in range(tick, upto + 1):  # the ticks missed while the last write ran, too
            records.extend(ticks.records(k))
        tick = upto + 1
        written = time.process_time()
        out.cpu_records += written - cpu
        for batch in chunked(records, MAX_BATCH):
            w0 = time.perf_counter()
            stats = store.write(batch)
            out.latencies.append(time.perf_counter() - w0)
            out.transactions += 1
            out.records += len(batch)
            out.rows += (stats.items_opened + stats.items_closed + stats.events + stats.samples
                         + stats.vms)  # fmt: skip
        out.cpu_write += time.process_time() - written
        out.lag = max(out.lag, time.time() - started - tick * FLUSH_SECONDS)
    out.seconds = time.time() - started
    return out


def collector(index: int, url: str, vms: int, packages: int, seconds: float, queue: Any,
              go: Any) -> None:  # fmt: skip
    """One collector process: rebuild its fleet, check it is the seeded one, run the steady
    phase once `go` is set."""
    try:
        fleet = build_fleet(index, vms, packages)
        store = Store(url)
        bad = seeded_digest_mismatches(store.engine, fleet)
        if bad:
            queue.put(("error", index, f"{bad} VMs differ from what was seeded"))
            return
        queue.put(("ready", index, None))
        go.wait()
        result = run_steady(store, fleet, index, seconds)
        store.close()
        queue.put(("steady", index, result))
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # reported by the parent
        queue.put(("error", index, repr(exc)))


# ---------------------------------------------------------------------- PostgreSQL side


#: The throwaway cluster's settings for the steady phase (see the module docstring).
SETTINGS = {
    "shared_buffers": "2GB", "effective_cache_size": "16GB", "maintenance_work_mem": "1GB",
    "work_mem": "16MB", "max_wal_size": "16GB", "min_wal_size": "1GB",
    "checkpoint_timeout": "15min", "checkpoint_completion_target": "0.9",
    "random_page_cost": "1.1", "max_connections": "50", "wal_level": "replica",
    "synchronous_commit": "on", "fsync": "on",
}  # fmt: skip
#: During the seed only: no WAL for the tables loaded in the seeding transaction.
SEED_SETTINGS = {**SETTINGS, "wal_level": "minimal", "max_wal_senders": "0"}


class Cluster:
    """A throwaway PostgreSQL cluster under `workdir` (as `postgres` when we are root)."""

    def __init__(self, workdir: Path) -> None:
        pg_bin = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)))
        self.root = Path(tempfile.mkdtemp(prefix="gw-scale-", dir=workdir))
        self.sock, self.data = self.root / "sock", self.root / "data"
        self.sock.mkdir()
        as_pg: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
            shutil.chown(self.sock, "postgres")
            as_pg = ["runuser", "-u", "postgres", "--"]
        try:
            subprocess.run([*as_pg, str(pg_bin / "initdb"), "-D", str(self.data), "-A", "trust",
                            "-U", "postgres"], check=True, capture_output=True)  # fmt: skip
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise
        self.ctl = [*as_pg, str(pg_bin / "pg_ctl"), "-D", str(self.data), "-w", "-t", "600",
                    "-l", str(self.root / "log")]  # fmt: skip

    def start(self, settings: dict[str, str]) -> None:
        options = " ".join(f"-c {k}={v}" for k, v in settings.items())
        subprocess.run([*self.ctl, "-o", f"-k {self.sock} -c listen_addresses= {options}",
                        "start"], check=True, capture_output=True)  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        subprocess.run([*self.ctl, "-m", mode, "stop"], check=False, capture_output=True)

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@/{database}?host={self.sock}"

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


def _stat(pid: int | str) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()


CLK_TCK = os.sysconf("SC_CLK_TCK")


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its children, live or reaped (PostgreSQL's backends and
    autovacuum workers come and go: a reaped child's time is in its parent's cutime)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat(entry.name)
        if fields is not None and (entry.name == str(pid) or fields[1] == str(pid)):
            total += sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
    return total / CLK_TCK


def machine_cpu() -> tuple[float, float]:
    """(busy, iowait) CPU seconds of the whole machine since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, iowait, irq, softirq, steal = values[:8]
    return (user + nice + system + irq + softirq + steal) / CLK_TCK, iowait / CLK_TCK


def postmaster_pid(url: str) -> int | None:
    """The PostgreSQL server's pid when it runs on this machine (a backend's parent)."""
    engine = create_engine(url)
    with engine.connect() as conn:
        backend = int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
    engine.dispose()
    fields = _stat(backend)
    comm = Path(f"/proc/{backend}/comm").read_text().strip() if fields else ""
    return int(fields[1]) if fields and comm.startswith("postgres") else None


def db_size(url: str) -> int:
    engine = create_engine(url)
    with engine.connect() as conn:
        size = int(conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one())
    engine.dispose()
    return size


def check_seed(url: str, fleets: list[list[SimVm]], at: float, workdir: Path) -> int:
    """`verify_seed` for the first and last VM of the first and last collector, against a
    scratch database on the same server (or SQLite when we may not create one)."""
    vms = list({id(vm): vm for vm in (fleets[0][0], fleets[0][-1], fleets[-1][0],
                                      fleets[-1][-1])}.values())  # fmt: skip
    name = f"{make_url(url).database}_seedcheck"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    scratch: Path | None = None
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        reference = make_url(url).set(database=name).render_as_string(hide_password=False)
    except Exception:  # no CREATEDB: a SQLite file does as well for a reference
        scratch = Path(tempfile.mkdtemp(prefix="gw-seedcheck-", dir=workdir))
        reference = f"sqlite:///{scratch / 'reference.db'}"
    try:
        return verify_seed(url, reference, vms, at)
    finally:
        if scratch is None:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        else:
            shutil.rmtree(scratch, ignore_errors=True)
        admin.dispose()


def _interrupted(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="PostgreSQL URL (default: a throwaway local cluster)")
    parser.add_argument("--collectors", type=int, default=10)
    parser.add_argument("--vms", type=int, default=10_000, help="VMs per collector")
    parser.add_argument("--packages", type=int, default=1500, help="packages per VM")
    parser.add_argument("--minutes", type=float, default=5.0, help="steady phase")
    parser.add_argument("--workdir", type=Path, default=Path("/var/tmp"),
                        help="where the throwaway cluster lives (default /var/tmp)")  # fmt: skip
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _interrupted)
    signal.signal(signal.SIGHUP, _interrupted)

    print(f"scaleout: {args.collectors} collectors × {args.vms} VMs × {args.packages} packages, "
          f"steady phase {args.minutes:g} min, {os.cpu_count()} cpus", flush=True)  # fmt: skip
    run_started = time.time()
    cluster: Cluster | None = None
    procs: list[Any] = []
    url = args.url
    try:
        if url is None:
            # About 240 bytes per item row with its indexes (measured), and room for the WAL.
            need = args.collectors * args.vms * (args.packages + 12) * 240 + (4 << 30)
            free = shutil.disk_usage(args.workdir).free
            if free < need:
                raise SystemExit(
                    f"{args.workdir}: {free / 2**30:.0f} GiB free, the cluster needs about "
                    f"{need / 2**30:.0f} GiB (--workdir elsewhere)"
                )
            cluster = Cluster(args.workdir)
            print(f"throwaway cluster in {cluster.root}; settings: "
                  + ", ".join(f"{k}={v}" for k, v in SETTINGS.items()), flush=True)  # fmt: skip
            cluster.start(SEED_SETTINGS)
            admin = create_engine(cluster.url("postgres"), isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text('CREATE DATABASE "scale"'))
            admin.dispose()
            url = cluster.url("scale")
        store = Store(url)
        store.upgrade()
        store.close()

        fleets = [build_fleet(i, args.vms, args.packages) for i in range(args.collectors)]
        at = time.time()
        postmaster = postmaster_pid(url)
        pg0 = tree_cpu(postmaster) if postmaster else 0.0
        seed = fast_seed(url, fleets, at, log=lambda line: print(line, flush=True))
        seed_cpu = f", PostgreSQL CPU {tree_cpu(postmaster) - pg0:.0f} s" if postmaster else ""
        verify_schema(url)
        compared = check_seed(url, fleets, at, args.workdir)
        print(f"seed: {seed.seconds:.0f} s for {seed.rows:,} rows ({seed.rows / seed.seconds:,.0f}"
              f" rows/s; COPY {seed.load_seconds:.0f} s = {seed.rows / seed.load_seconds:,.0f}"
              f" rows/s, indexes {seed.index_seconds:.0f} s, VACUUM ANALYZE "
              f"{seed.analyze_seconds:.0f} s{seed_cpu}); {seed.items:,} item rows; checked: "
              f"{compared} rows of 4 VMs equal to Store.write's, schema at Alembic head",
              flush=True)  # fmt: skip
        del fleets
        if cluster is not None:  # the measured phase runs with the WAL a deployment has
            cluster.stop()
            cluster.start(SETTINGS)
        size_seeded = db_size(url)

        queue: Any = mp.Queue()
        go = mp.Event()
        procs = [mp.Process(target=collector, args=(i, url, args.vms, args.packages,
                                                     args.minutes * 60, queue, go))
                 for i in range(args.collectors)]  # fmt: skip
        for p in procs:
            p.start()
        for _ in procs:
            what, index, detail = queue.get()
            if what == "error":
                raise RuntimeError(f"collector {index}: {detail}")
        postmaster = postmaster_pid(url)
        pg0 = tree_cpu(postmaster) if postmaster else 0.0
        busy0, iowait0 = machine_cpu()
        wall0 = time.time()
        go.set()
        steady: list[Steady] = []
        for _ in procs:
            what, index, detail = queue.get()
            if what == "error":
                raise RuntimeError(f"collector {index}: {detail}")
            steady.append(detail)
        wall = time.time() - wall0
        pg_cpu = tree_cpu(postmaster) - pg0 if postmaster else None
        busy1, iowait1 = machine_cpu()
        load = Path("/proc/loadavg").read_text().split()[0]
        for p in procs:
            p.join()
        size_end = db_size(url)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join(10)
        if cluster is not None:
            cluster.destroy()

    total_vms = args.collectors * args.vms
    duration = statistics.mean(s.seconds for s in steady)
    rows = sum(s.rows for s in steady)
    transactions = sum(s.transactions for s in steady)
    latencies = sorted(x for s in steady for x in s.latencies)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else 0.0
    p50 = statistics.median(latencies) if latencies else 0.0
    print(f"size: {size_seeded / total_vms / 1024:.1f} KiB per VM after seeding")
    print(f"sustained: {rows / duration:,.0f} rows/s, {transactions / duration:.1f} transactions/s"
          f" ({sum(s.records for s in steady) / duration:,.0f} records/s), "
          f"worst lag behind schedule {max(s.lag for s in steady):.1f} s "
          "(0: every tick written within its half second)")  # fmt: skip
    print(f"write latency: p50 {1000 * p50:.1f} ms, p99 {1000 * p99:.1f} ms")
    gen_records = sum(s.cpu_records for s in steady)
    gen_write = sum(s.cpu_write for s in steady)
    pg = "n/a (not local)" if pg_cpu is None else f"{pg_cpu:.0f} s = {pg_cpu / wall:.2f} cores"
    print(f"cpu over {wall:.0f} s: generators {gen_records + gen_write:.0f} s = "
          f"{(gen_records + gen_write) / wall:.2f} cores (records {gen_records:.0f} s, "
          f"Store.write client {gen_write:.0f} s); PostgreSQL {pg}; machine busy "
          f"{(busy1 - busy0) / wall:.2f} of {os.cpu_count()} cores, iowait "
          f"{(iowait1 - iowait0) / wall:.2f}, load {load}")  # fmt: skip
    growth = (size_end - size_seeded) / total_vms * (86400 / duration)
    print(f"database growth: {growth / 1024:.1f} KiB per VM per day (at the default drift)")
    print(f"wall time: {time.time() - run_started:.0f} s in all")


if __name__ == "__main__":
    main()
