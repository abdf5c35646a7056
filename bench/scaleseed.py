"""The simulated fleet of bench/scaleout.py and its fast seed (PostgreSQL COPY).

Seeding 10 × 10,000 VMs through `Store.write` (the real write path) takes well over an hour:
150 million package rows, each diffed and inserted through an executemany. The fast seed
writes the rows that path would have written for every VM's first inventory (a first
`InventoryObserved` of packages, filesystems, os, hostname, cpus and network: the VM row,
the current `inventory_items`, the `inventory_sets` digests and one `inventory_first_seen`
event per kind) with binary `COPY ... FREEZE` in one transaction that truncates the (empty)
tables first, the way pg_restore loads a dump: the secondary indexes of `inventory_items` are
dropped before and rebuilt after from their own definitions, foreign keys are not checked row
by row (`session_replication_role = replica` as superuser; otherwise they are dropped and
re-added, which validates them), rows arrive frozen so no vacuum has to rewrite them later.
`verify_seed` proves the result equal, table by table and column by column apart from
surrogate ids, to what `Store.write` writes for the same facts in a separate database;
`verify_schema` that the schema is Alembic head again.

The fleet is deterministic: `build_fleet(index, ...)` gives the seeder and the collector
process the same VMs. Packages come from a few shared templates (fleets share distribution
versions), so a VM's 1,500 packages cost a reference, not a dict, in 10 collector processes.
"""

from __future__ import annotations

import functools
import random
import struct
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, Table, create_engine, select, text

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
from storage import db
from storage.models import Base
from storage.records import InventoryObserved, VmRef
from storage.repository import Store

#: Distinct package lists in the fleet; each VM runs one of them.
TEMPLATES = 64
SEED_KINDS = (FactKind.PACKAGES, FactKind.FILESYSTEMS, FactKind.OS, FactKind.HOSTNAME,
              FactKind.CPUS, FactKind.NETWORK)  # fmt: skip
OS = OsInfo(id="debian", name="Debian GNU/Linux", pretty_name="Debian GNU/Linux 12 (bookworm)",
            version_id="12", kernel_release="6.1.0-28-amd64", machine="x86_64")  # fmt: skip


@functools.cache
def package_template(template: int, packages: int) -> tuple[Package, ...]:
    """One of the fleet's package lists: `pkg00000`... with random versions."""
    rng = random.Random(f"packages/{template}")
    return tuple(
        Package(name=f"pkg{i:05d}", version=f"{rng.randint(1, 9)}.{rng.randint(0, 30)}-"
                f"{rng.randint(1, 5)}", arch="amd64", manager="dpkg")
        for i in range(packages)
    )  # fmt: skip


@functools.cache
def template_set(template: int, packages: int) -> FactSet:
    return fact_set(FactKind.PACKAGES, package_template(template, packages))


def _random_address(rng: random.Random) -> str:
    return f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(2, 254)}"


class SimVm:
    """One VM's inventory: a package template plus its own changes, and a few small sets."""

    __slots__ = ("address", "delta", "disks", "next_package", "nics", "packages", "phase",
                 "ref", "template", "users")  # fmt: skip

    def __init__(self, ref: VmRef, rng: random.Random, packages: int) -> None:
        self.ref = ref
        self.packages = packages
        self.template = rng.randrange(TEMPLATES)
        #: Package name → its current package, or None once removed (the template otherwise).
        self.delta: dict[str, Package | None] = {}
        self.next_package = packages
        self.address = _random_address(rng)
        self.users: list[UserSession] = []
        self.disks = rng.randint(1, 6)
        self.nics = rng.randint(1, 4)
        self.phase = rng.uniform(0, 1)

    def package(self, name: str) -> Package | None:
        if name in self.delta:
            return self.delta[name]
        index = int(name[3:])
        return package_template(self.template, self.packages)[index] if index < self.packages \
            else None  # fmt: skip

    def package_set(self) -> FactSet:
        if not self.delta:
            return template_set(self.template, self.packages)
        base = package_template(self.template, self.packages)
        items = [self.delta.get(p.name, p) for p in base]
        items += [p for n, p in self.delta.items() if int(n[3:]) >= self.packages]
        return fact_set(FactKind.PACKAGES, (p for p in items if p is not None))

    def system_sets(self) -> list[FactSet]:
        return [
            fact_set(FactKind.OS, [OS]),
            fact_set(FactKind.HOSTNAME, [Hostname(name=self.ref.name)]),
            fact_set(FactKind.CPUS, [Cpus(online=2, total=2)]),
            fact_set(FactKind.NETWORK, [
                NetInterface(name=f"eth{i}", mac=f"52:54:00:00:{i:02x}:01",
                             addresses=(NetAddress(self.address, 24, "ipv4"),) if i == 0 else ())
                for i in range(self.nics)
            ]),
        ]  # fmt: skip

    def mountpoints(self) -> list[str]:
        return ["/" if i == 0 else f"/data{i}" for i in range(self.disks)]

    def filesystem_set(self, used: Callable[[], int] = lambda: 1 << 30) -> FactSet:
        return fact_set(FactKind.FILESYSTEMS, [
            Filesystem(mountpoint=m, fstype="ext4", size_bytes=50 << 30, used_bytes=used())
            for m in self.mountpoints()
        ])  # fmt: skip

    def seed_sets(self) -> list[FactSet]:
        """The first inventory of every seeded kind (in `SEED_KINDS` order)."""
        return [self.package_set(), self.filesystem_set(), *self.system_sets()]

    # Drift (bench/scaleout.py calls these when the kind's poll comes round).

    def _pick_package(self, rng: random.Random) -> str:
        while True:
            name = f"pkg{rng.randrange(self.next_package):05d}"
            if self.package(name) is not None:
                return name

    def upgrade(self, rng: random.Random) -> None:
        name = self._pick_package(rng)
        current = self.package(name)
        assert current is not None
        self.delta[name] = replace(current, version=current.version + "+u1")

    def install(self) -> None:
        name = f"pkg{self.next_package:05d}"
        self.delta[name] = Package(name=name, version="1.0-1", arch="amd64", manager="dpkg")
        self.next_package += 1

    def remove(self, rng: random.Random) -> None:
        self.delta[self._pick_package(rng)] = None

    def new_address(self, rng: random.Random) -> None:
        self.address = _random_address(rng)


def collector_host(index: int) -> str:
    return f"hv-{index:02d}"


def build_fleet(index: int, vms: int, packages: int) -> list[SimVm]:
    """Collector `index`'s VMs, the same in every process that builds them."""
    rng = random.Random(index)
    host = collector_host(index)
    return [SimVm(VmRef(key=f"{host}/vm{i:05d}", name=f"vm{i:05d}", hypervisor=host,
                        protocol="qga"), rng, packages) for i in range(vms)]  # fmt: skip


# ---------------------------------------------------------------------- binary COPY rows

_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_TRAILER = struct.pack(">h", -1)
_NULL = struct.pack(">i", -1)


def _timestamptz(at: float) -> bytes:
    """As `Store.write` stores `at`: `datetime.fromtimestamp(at, UTC)`, in microseconds."""
    micros = (datetime.fromtimestamp(at, UTC) - _PG_EPOCH) // timedelta(microseconds=1)
    return struct.pack(">iq", 8, micros)


def _int4(value: int) -> bytes:
    return struct.pack(">ii", 4, value)


def _text(value: str | None) -> bytes:
    if value is None:
        return _NULL
    data = value.encode("utf-8")
    return struct.pack(">i", len(data)) + data


def _bytea(value: bytes) -> bytes:
    return struct.pack(">i", len(value)) + value


def _row(*fields: bytes) -> bytes:
    return struct.pack(">h", len(fields)) + b"".join(fields)


VMS_COLUMNS = "id, key, name, uuid, hypervisor, protocol, first_seen, last_heartbeat, state, " \
              "state_since"  # fmt: skip
#: The first three columns are the VM's, the rest the item's: a VM's package rows are its
#: prefix joined with the template's pre-encoded suffixes.
ITEMS_COLUMNS = "vm_id, hypervisor, valid_from, kind, name, identity, value, valid_to"
SETS_COLUMNS = "vm_id, kind, digest, item_count, first_seen, changed_at"
EVENTS_COLUMNS = "vm_id, hypervisor, at, type, kind, subject, old, new"


def _item_suffix(kind: FactKind, fact: Any) -> bytes:
    return _text(str(kind)) + _text(fact.label()) + _text(fact.identity()) + \
        _text(fact.value()) + _NULL  # fmt: skip


@functools.cache
def _template_rows(template: int, packages: int) -> list[bytes]:
    packages_ = package_template(template, packages)
    return [b""] + [_item_suffix(FactKind.PACKAGES, p) for p in packages_]


@dataclass(frozen=True, slots=True)
class SeedStats:
    vms: int
    items: int
    sets: int
    events: int
    load_seconds: float  # COPY
    index_seconds: float  # secondary indexes (and foreign keys when re-added)
    analyze_seconds: float  # VACUUM ANALYZE

    @property
    def rows(self) -> int:
        return self.vms + self.items + self.sets + self.events

    @property
    def seconds(self) -> float:
        return self.load_seconds + self.index_seconds + self.analyze_seconds


class _Copy:
    """A binary `COPY ... FREEZE` of one table, buffered into large writes (a context: the
    connection stays locked by psycopg until the COPY ends, also on an exception)."""

    def __init__(self, cursor: Any, table: str, columns: str) -> None:
        self._context = cursor.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT BINARY, FREEZE)")
        self._parts: list[bytes] = [_SIGNATURE]
        self._size = 0
        self.rows = 0

    def __enter__(self) -> _Copy:
        self._copy = self._context.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if exc[0] is None:
            self._parts.append(_TRAILER)
            self._copy.write(b"".join(self._parts))
        self._context.__exit__(*exc)

    def add(self, data: bytes, rows: int = 1) -> None:
        self._parts.append(data)
        self._size += len(data)
        self.rows += rows
        if self._size > 4 << 20:
            self._copy.write(b"".join(self._parts))
            self._parts, self._size = [], 0


def fast_seed(url: str, fleets: Sequence[Sequence[SimVm]], at: float, *,
              maintenance_work_mem: str = "1GB", log: Callable[[str], None] = print,
              ) -> SeedStats:  # fmt: skip
    """Write every VM's first inventory as `Store.write` would, into an empty database at head.

    One transaction: if anything fails (or Ctrl-C), nothing is left half-loaded.
    """
    engine = create_engine(url)
    raw = engine.raw_connection()
    try:
        conn: Any = raw.driver_connection
        conn.autocommit = False
        with conn.cursor() as cur:
            cur.execute("SELECT EXISTS (SELECT 1 FROM vms)")
            if cur.fetchone()[0]:
                raise RuntimeError("the fast seed needs an empty database (vms has rows)")
            cur.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            superuser = bool(cur.fetchone()[0])
            cur.execute("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = "
                        "current_schema() AND tablename = 'inventory_items' AND indexname <> "
                        "'pk_inventory_items' ORDER BY indexname")  # fmt: skip
            indexes = list(cur.fetchall())
            foreign_keys: list[tuple[str, str]] = []
            if superuser:
                cur.execute("SET LOCAL session_replication_role = replica")
            else:
                cur.execute(
                    "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                    "WHERE conrelid = 'inventory_items'::regclass AND contype = 'f'"
                )
                foreign_keys = list(cur.fetchall())
                for name, _ in foreign_keys:
                    cur.execute(f'ALTER TABLE inventory_items DROP CONSTRAINT "{name}"')
            for name, _ in indexes:
                cur.execute(f'DROP INDEX "{name}"')
            # A sequence that hands out ids a 10,000 at a time costs a third less per row.
            cur.execute(
                "SELECT s.seqrelid::regclass::text, s.seqcache FROM pg_sequence s WHERE "
                "s.seqrelid = pg_get_serial_sequence('inventory_items', 'id')::regclass"
            )
            sequence, seqcache = cur.fetchone()
            cur.execute(f"ALTER SEQUENCE {sequence} CACHE 10000")
            # Truncated in this transaction: COPY FREEZE is allowed, and with wal_level=minimal
            # the tables' writes skip the WAL (the files are synced at commit instead).
            cur.execute("TRUNCATE vms, inventory_items, inventory_sets, events CASCADE")
            started = time.perf_counter()
            counts = _copy_fleet(cur, fleets, at, log)
            cur.execute("SELECT setval(pg_get_serial_sequence('vms', 'id'), %s)",
                        (max(counts[0], 1),))  # fmt: skip
            cur.execute(f"ALTER SEQUENCE {sequence} CACHE {int(seqcache):d}")
            load_seconds = time.perf_counter() - started
            log(f"seed: {counts[1]:,} item rows loaded in {load_seconds:.0f} s, building indexes")
            started = time.perf_counter()
            cur.execute(f"SET LOCAL maintenance_work_mem = '{maintenance_work_mem}'")
            for _, definition in indexes:
                cur.execute(definition)
            for name, definition in foreign_keys:
                cur.execute(f'ALTER TABLE inventory_items ADD CONSTRAINT "{name}" {definition}')
            conn.commit()
            index_seconds = time.perf_counter() - started
        conn.autocommit = True
        started = time.perf_counter()
        with conn.cursor() as cur:
            cur.execute("VACUUM (ANALYZE) vms, inventory_items, inventory_sets, events")
        analyze_seconds = time.perf_counter() - started
    finally:
        raw.close()
        engine.dispose()
    return SeedStats(*counts, load_seconds, index_seconds, analyze_seconds)


def _copy_fleet(cur: Any, fleets: Sequence[Sequence[SimVm]], at: float,
                log: Callable[[str], None]) -> tuple[int, int, int, int]:  # fmt: skip
    ts = _timestamptz(at)
    vm_ids: list[tuple[int, SimVm]] = []
    with _Copy(cur, "vms", VMS_COLUMNS) as vms:
        for fleet in fleets:
            for vm in fleet:
                vm_id = len(vm_ids) + 1
                vm_ids.append((vm_id, vm))
                ref = vm.ref
                vms.add(_row(_int4(vm_id), _text(ref.key), _text(ref.name), _text(ref.uuid),
                             _text(ref.hypervisor), _text(ref.protocol), ts, _NULL,
                             _text("unknown"), ts))  # fmt: skip

    # One COPY at a time per connection: the item rows stream, the small tables' rows wait.
    set_rows: list[bytes] = []
    event_rows: list[bytes] = []
    every = max(1, len(vm_ids) // 10)
    with _Copy(cur, "inventory_items", ITEMS_COLUMNS) as items:
        for n, (vm_id, vm) in enumerate(vm_ids, 1):
            prefix = struct.pack(">h", 8) + _int4(vm_id) + _text(vm.ref.hypervisor) + ts
            for facts in vm.seed_sets():
                kind = facts.kind
                if kind is FactKind.PACKAGES and not vm.delta:
                    rows = _template_rows(vm.template, vm.packages)
                    items.add(prefix.join(rows), len(rows) - 1)
                else:
                    for fact in facts.items:
                        items.add(prefix + _item_suffix(kind, fact))
                count = len(facts.items)
                set_rows.append(_row(_int4(vm_id), _text(str(kind)), _bytea(facts.digest()),
                                     _int4(count), ts, ts))  # fmt: skip
                event_rows.append(_row(_int4(vm_id), _text(vm.ref.hypervisor), ts,
                                       _text("inventory_first_seen"), _text(str(kind)),
                                       _text(str(kind)), _NULL, _text(str(count))))  # fmt: skip
            if n % every == 0:
                log(f"seed: {n:,}/{len(vm_ids):,} VMs, {items.rows:,} item rows")
    for table, columns, rows in (("inventory_sets", SETS_COLUMNS, set_rows),
                                 ("events", EVENTS_COLUMNS, event_rows)):  # fmt: skip
        with _Copy(cur, table, columns) as copy:
            for row in rows:
                copy.add(row)
    return len(vm_ids), items.rows, len(set_rows), len(event_rows)


# ---------------------------------------------------------------------- checks


def _snapshot(engine: Engine, keys: Sequence[str]) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the given VMs in every table with a `vm_id`: surrogate ids left out,
    `vm_id` replaced by the VM's key, so two databases can be compared."""
    vms = Base.metadata.tables["vms"]
    out: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as conn:
        rows = conn.execute(select(vms).where(vms.c.key.in_(keys))).mappings().all()
        key_of = {row["id"]: row["key"] for row in rows}
        out["vms"] = _normal(rows, "id", key_of)
        for table in Base.metadata.sorted_tables:
            if "vm_id" in table.c:
                found = conn.execute(select(table).where(table.c.vm_id.in_(list(key_of))))
                out[table.name] = _normal(found.mappings().all(), _surrogate(table), key_of)
    return out


def _surrogate(table: Table) -> str | None:
    pk = list(table.primary_key.columns)
    return "id" if len(pk) == 1 and pk[0].name == "id" else None


def _normal(rows: Iterable[Any], drop: str | None, key_of: dict[int, str]) -> list[tuple[Any, ...]]:
    out = []
    for row in rows:
        values = {k: (key_of[v] if k == "vm_id" else bytes(v) if isinstance(v, memoryview) else v)
                  for k, v in row.items() if k != drop}  # fmt: skip
        out.append(tuple(sorted(values.items())))
    return sorted(out, key=repr)


def verify_seed(url: str, reference_url: str, vms: Sequence[SimVm], at: float) -> int:
    """Compare the seeded rows of `vms` with what `Store.write` writes for the same first
    inventories (the same `at`) into the empty database `reference_url`; raise on any
    difference. Returns the number of rows compared."""
    reference = Store(reference_url)
    try:
        reference.upgrade()
        reference.write([InventoryObserved(vm.ref, at, facts)
                         for vm in vms for facts in vm.seed_sets()])  # fmt: skip
        expected = _snapshot(reference.engine, [vm.ref.key for vm in vms])
    finally:
        reference.close()
    engine = create_engine(url)
    try:
        seeded = _snapshot(engine, [vm.ref.key for vm in vms])
    finally:
        engine.dispose()
    for table in sorted(expected.keys() | seeded.keys()):
        want, got = expected.get(table, []), seeded.get(table, [])
        if want != got:
            extra = [row for row in got if row not in want][:2]
            missing = [row for row in want if row not in got][:2]
            raise RuntimeError(f"fast seed differs from Store.write in {table}: "
                               f"{len(got)} rows vs {len(want)}; unexpected {extra}, "
                               f"missing {missing}")  # fmt: skip
    return sum(len(rows) for rows in expected.values())


def verify_schema(url: str) -> None:
    """Raise unless the database is at Alembic head and matches the models (as
    tests/storage/test_migrations.py checks): the rebuilt indexes are all there."""
    engine = db.create_engine_for(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(context, Base.metadata)
        if diff or not db.is_up_to_date(engine):
            raise RuntimeError(f"schema after the fast seed is not Alembic head: {diff}")
    finally:
        engine.dispose()


def seeded_digest_mismatches(engine: Engine, fleet: Sequence[SimVm]) -> int:
    """VMs of `fleet` whose stored set digests differ from their in-memory state (a collector
    process checks that its fleet is the one that was seeded)."""
    host = fleet[0].ref.hypervisor if fleet else ""
    stored: dict[tuple[str, str], bytes] = {}
    with engine.connect() as conn:
        for key, kind, digest in conn.execute(
            text("SELECT v.key, s.kind, s.digest FROM inventory_sets s JOIN vms v "
                 "ON v.id = s.vm_id WHERE v.hypervisor = :host"), {"host": host},
        ):  # fmt: skip
            stored[(key, kind)] = bytes(digest)
    bad = 0
    for vm in fleet:
        sets = vm.seed_sets()
        if any(stored.get((vm.ref.key, str(f.kind))) != f.digest() for f in sets):
            bad += 1
    return bad


def chunked(values: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]
