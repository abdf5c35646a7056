"""The store: records observations as history and answers history queries.

`Store.write` takes a batch of records from the one writer task and applies it in one
transaction with a fixed number of statements whatever the number of rows (each is an
executemany or a set-based SELECT), because 10,000 VMs x 1,500 packages must not cost a round
trip per row; a changed package list whose changed ranges are known (`collector.ranges`)
costs one SELECT of those ranges' rows instead of a share of one over all of them.
Synchronous on purpose: the writer calls it in a thread, the CLI directly.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, TypeAlias, cast

from sqlalchemy import (
    ColumnElement,
    Engine,
    Table,
    and_,
    bindparam,
    case,
    delete,
    false,
    insert,
    null,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Dialect, Row
from sqlalchemy.sql import Select
from sqlalchemy.sql.dml import Insert

from collector.facts import Fact, FactKind, pairs_digest
from collector.ranges import SetDelta
from storage import alerts as _alerts
from storage import db
from storage.diff import SUBJECT_MAX, Change, EventType, bounded, changes
from storage.models import (
    KEY_LEN,
    KIND_LEN,
    METRIC_LEN,
    NAME_LEN,
    PROTOCOL_LEN,
    REASON_LEN,
    STATE_LEN,
    UUID_LEN,
    Event,
    InventoryItem,
    InventorySet,
    KindStatusRow,
    SampleRow,
    UtcDateTime,
    Vm,
)
from storage.queries import (
    AmbiguousDomain,
    DomainNotFound,
    EventView,
    HistoryEntry,
    Inventory,
    KindState,
    PackageHit,
    SamplePoint,
    StoreError,
    VmInfo,
    WriteStats,
)
from storage.records import (
    HeartbeatSeen,
    InventoryObserved,
    KindStatus,
    KindSucceeded,
    LivenessChanged,
    Record,
    SamplesObserved,
    VmRef,
)

__all__ = [
    "AmbiguousDomain",
    "DomainNotFound",
    "EventView",
    "HistoryEntry",
    "Inventory",
    "KindState",
    "PackageHit",
    "SamplePoint",
    "Store",
    "StoreError",
    "VmInfo",
    "WriteStats",
]

#: Keys per `IN (...)` list: far below SQLite's and PostgreSQL's bound-parameter limits.
IN_CHUNK: Final = 500

_VMS = cast(Table, Vm.__table__)
_ITEMS = cast(Table, InventoryItem.__table__)
_SETS = cast(Table, InventorySet.__table__)
_EVENTS = cast(Table, Event.__table__)
_SAMPLES = cast(Table, SampleRow.__table__)
_STATUS = cast(Table, KindStatusRow.__table__)


AnyRow: TypeAlias = Row[*tuple[Any, ...]]


def _ts(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _clean(text: str, limit: int | None = None) -> str:
    """Text the database accepts: no NUL (PostgreSQL), no lone surrogates (any driver)."""
    if not text.isascii():
        text = text.encode("utf-8", "replace").decode("utf-8")
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    return text if limit is None else text[:limit]


def _chunks(values: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), IN_CHUNK):
        yield values[start : start + IN_CHUNK]


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


Excluded = Any  # the dialect Insert's `excluded` column collection


def _upsert(
    dialect: str,
    table: Table,
    keys: Sequence[str],
    update_from: Callable[[Excluded], Mapping[str, Any]] | None,
) -> Insert:
    """INSERT ... ON CONFLICT for the two supported backends (same syntax, separate constructs)."""
    if dialect == "postgresql":
        pg = postgresql.insert(table)
        if update_from is None:
            return pg.on_conflict_do_nothing(index_elements=keys)
        return pg.on_conflict_do_update(index_elements=keys, set_=update_from(pg.excluded))
    if dialect == "sqlite":
        lite = sqlite.insert(table)
        if update_from is None:
            return lite.on_conflict_do_nothing(index_elements=keys)
        return lite.on_conflict_do_update(index_elements=keys, set_=update_from(lite.excluded))
    raise StoreError(f"unsupported database backend: {dialect}")


#: The samples table's columns in the order `_SamplesInsert` sends them.
_SAMPLE_COLUMNS: Final = ("vm_id", "hypervisor", "at", "metric", "label", "value")
_SampleParams: TypeAlias = tuple[int, str, Any, str, str, float]


class _SamplesInsert:
    """The samples insert, compiled once for the dialect and sent plain tuples.

    The samples table takes a steady fleet's biggest insert (about 15 rows per VM and 120 s,
    1,250 rows a second at 10,000 VMs). Through `conn.execute(insert(...), dicts)` SQLAlchemy
    converts every row's timestamp on its own, though a poll's samples share one, and maps
    every row's parameters; here the timestamp is converted once per poll and the rows go to
    the driver's `executemany` as they are (`bench/store_samples.py`).
    """

    def __init__(self, dialect: Dialect) -> None:
        compiled = insert(_SAMPLES).inline().compile(dialect=dialect, column_keys=_SAMPLE_COLUMNS)
        self._sql = str(compiled)
        self._named = not compiled.positional
        if compiled.positional and tuple(compiled.positiontup or ()) != _SAMPLE_COLUMNS:
            raise StoreError(f"unexpected samples insert for {dialect.name}: {self._sql}")
        # The dialect's implementation, as SQLAlchemy's own statements use it: the generic
        # type's would hand SQLite a datetime that its driver formats differently.
        self._stamp = _SAMPLES.c.at.type.dialect_impl(dialect).bind_processor(dialect)

    def stamp(self, at: datetime) -> Any:
        """`at` as the driver is sent it (SQLite: the text every stored timestamp has)."""
        return at if self._stamp is None else self._stamp(at)

    def execute(self, conn: Connection, rows: list[_SampleParams]) -> None:
        params: list[Any] = rows
        if self._named:
            params = [dict(zip(_SAMPLE_COLUMNS, row, strict=True)) for row in rows]
        conn.exec_driver_sql(self._sql, params)


#: A current item of one VM and kind while a batch is applied: (row id, name, value, pending,
#: valid_from). An existing row has its id and no pending row; a row this batch opened has no
#: id and its insert parameters (`pending`, which closing it edits). A plain tuple, because
#: a changed package list loads a thousand-odd of them per VM and a class instance per row
#: cost as much as the query (`bench/store_diff.py`): the query's rows are sliced into them.
_Item: TypeAlias = tuple[int | None, str, str, dict[str, Any] | None, datetime | None]
_ROW_ID: Final = 0
_NAME: Final = 1
_VALUE: Final = 2
_PENDING: Final = 3
_VALID_FROM: Final = 4


@dataclass(slots=True)
class _SetState:
    items: dict[str, _Item]
    exists: bool  # an inventory_sets row exists in the database
    dirty: bool = False
    first_seen: datetime | None = None
    changed_at: datetime | None = None
    digest: bytes | None = None  # of `items`, when known without recomputing it
    #: The set's item count when `items` holds only the rows of its changed ranges.
    count: int | None = None


@dataclass(slots=True)
class _Batch:
    """Everything one `write` call will send, accumulated in record order."""

    vm_ids: dict[str, int]
    sets: dict[tuple[int, str], _SetState] = field(default_factory=dict)
    #: Sets diffed by ranges: the observed items of their changed ranges, by identity.
    ranged: dict[tuple[int, str], dict[str, tuple[Fact, str]]] = field(default_factory=dict)
    opened: list[dict[str, Any]] = field(default_factory=list)
    closed: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    samples: list[_SampleParams] = field(default_factory=list)
    status: dict[tuple[int, str], dict[str, Any]] = field(default_factory=dict)
    success: dict[tuple[int, str], datetime] = field(default_factory=dict)
    heartbeats: dict[int, datetime] = field(default_factory=dict)
    liveness: dict[int, dict[str, Any]] = field(default_factory=dict)
    #: The hypervisor each VM of the batch is on now (after this batch's claims).
    hypervisors: dict[int, str] = field(default_factory=dict)
    #: The hypervisor the record being applied was observed on: stamped on every row.
    host: str = ""

    def event(self, vm_id: int, at: datetime, kind: str | None, change: Change) -> None:
        self.events.append(
            {
                "vm_id": vm_id,
                "hypervisor": self.host,
                "at": at,
                "type": str(change.type),
                "kind": kind,
                "subject": _clean(change.subject, SUBJECT_MAX),
                "old": None if change.old is None else _clean(change.old),
                "new": None if change.new is None else _clean(change.new),
            }
        )


def _current_rows(kind: str, vm_ids: Sequence[int]) -> Select[Any]:
    """The current rows of `kind` of `vm_ids`, as (vm_id, identity, *_Item)."""
    return (
        select(
            _ITEMS.c.vm_id,
            _ITEMS.c.identity,
            _ITEMS.c.id,  # the _Item from here on
            _ITEMS.c.name,
            _ITEMS.c.value,
            null(),
            null(),
        )
        .where(_ITEMS.c.kind == kind)
        .where(_ITEMS.c.vm_id.in_(vm_ids))
        .where(_ITEMS.c.valid_to.is_(None))
    )


def _range_items(delta: SetDelta) -> dict[str, tuple[Fact, str]] | None:
    """The changed ranges' items by identity, or None if they cannot be diffed by range: an
    identity or bound the database would store altered, or an identity twice."""
    if any(_clean(bound) != bound for bound in delta.bounds):
        return None
    observed = {}
    for identity, value, fact in delta.items:
        if _clean(identity) != identity:
            return None
        observed[identity] = (fact, value)
    return observed if len(observed) == len(delta.items) else None


def _in_ranges(column: ColumnElement[str], delta: SetDelta, dialect: str) -> ColumnElement[bool]:
    """`column` in the delta's changed ranges, adjacent ones merged, by code point order
    (SQLite's text order; PostgreSQL's under the "C" collation)."""
    key = column.collate("C") if dialect == "postgresql" else column
    bounds = delta.bounds
    spans: list[list[int]] = []  # [first, last] changed range of each run of adjacent ones
    for index in delta.ranges:
        if spans and spans[-1][1] == index - 1:
            spans[-1][1] = index
        else:
            spans.append([index, index])
    clauses: list[ColumnElement[bool]] = []
    for first, last in spans:
        parts = []
        if first > 0:
            parts.append(key >= bounds[first - 1])
        if last < len(bounds):
            parts.append(key < bounds[last])
        clauses.append(and_(true(), *parts))
    return or_(false(), *clauses)


def _answered_on_host(record: Record) -> bool:
    if isinstance(record, LivenessChanged):
        return record.new == "up"
    if isinstance(record, KindStatus):
        return record.status == "ok"
    return True


class Store:
    """The history store over one database (SQLite file or PostgreSQL)."""

    def __init__(self, url: str | Engine, *, alerting: _alerts.AlertPolicy | None = None) -> None:
        self._alerting = alerting
        if isinstance(url, Engine):
            self._engine = url
            self._owned = False
        else:
            self._engine = db.create_engine_for(url)
            self._owned = True
        self._samples = _SamplesInsert(self._engine.dialect)

    @property
    def engine(self) -> Engine:
        return self._engine

    def upgrade(self, revision: str = "head") -> None:
        """Create or migrate the schema (`guestwatch db upgrade`)."""
        db.upgrade(self._engine, revision)

    def is_up_to_date(self) -> bool:
        return db.is_up_to_date(self._engine)

    def set_alerting(self, policy: _alerts.AlertPolicy | None) -> None:
        """Open and close guestwatch's own alerts with liveness transitions (storage/alerts)."""
        self._alerting = policy

    def alerts(
        self, state: str | None = None, domain: str | None = None, limit: int = 200
    ) -> list[_alerts.AlertView]:
        """guestwatch's own alerts, most recently changed first, with their delivery state."""
        return _alerts.list_alerts(self._engine, state=state, domain=domain, limit=limit)

    def close(self) -> None:
        if self._owned:
            self._engine.dispose()

    # ------------------------------------------------------------------ writing

    def write(self, records: Sequence[Record]) -> WriteStats:
        """Apply a batch of records, in order, in one transaction."""
        started = time.perf_counter()
        if not records:
            return WriteStats()
        with self._engine.connect() as conn:
            conn.execution_options(**{db.WRITE_TRANSACTION: True})
            with conn.begin():
                batch = _Batch(vm_ids={})
                self._upsert_vms(conn, batch, records)
                self._load_sets(conn, batch, records)
                for record in records:
                    self._apply(batch, record)
                self._flush(conn, batch)
                if self._alerting is not None and batch.liveness:
                    _alerts.on_liveness(conn, self._alerting, batch.vm_ids, records)
        return WriteStats(
            records=len(records),
            vms=len(batch.vm_ids),
            items_opened=len(batch.opened),
            items_closed=len(batch.closed)
            + sum(1 for row in batch.opened if row["valid_to"] is not None),
            events=len(batch.events),
            samples=len(batch.samples),
            sets_ranged=len(batch.ranged),
            seconds=time.perf_counter() - started,
        )

    def _upsert_vms(self, conn: Connection, batch: _Batch, records: Sequence[Record]) -> None:
        """Insert new VMs, update changed attributes (a new hypervisor is a `migrated`
        event); fill the batch's key → id and id → current hypervisor maps."""
        refs: dict[str, VmRef] = {}
        first_at: dict[str, float] = {}
        claim_at: dict[str, float] = {}
        for record in records:
            key = _clean(record.vm.key, KEY_LEN)
            first_at.setdefault(key, record.at)
            # Only proof that the agent answered on a host claims the VM for that host:
            # after a migration, the source's last words (failed polls, late, gone) must
            # not move it back.
            if _answered_on_host(record):
                refs[key] = record.vm
                claim_at[key] = record.at
            else:
                refs.setdefault(key, record.vm)
        keys = sorted(refs)  # one lock order for every writer: no deadlocks between hosts

        known: dict[str, AnyRow] = {}
        for chunk in _chunks(keys):
            for row in conn.execute(
                select(
                    _VMS.c.id,
                    _VMS.c.key,
                    _VMS.c.name,
                    _VMS.c.uuid,
                    _VMS.c.hypervisor,
                    _VMS.c.protocol,
                )
                .where(_VMS.c.key.in_(chunk))
                .order_by(_VMS.c.key)
                # Lock the batch's VM rows (in key order: no deadlocks) so that two hosts
                # writing the same migrating VM see each other's claim, not a stale one.
                .with_for_update()
            ):
                known[row.key] = row

        ids = {key: row.id for key, row in known.items()}
        missing = [key for key in keys if key not in known]
        if missing:
            rows = []
            for key in missing:
                ref, at = refs[key], _ts(first_at[key])
                rows.append(
                    {
                        "key": key,
                        "name": _clean(ref.name, NAME_LEN),
                        "uuid": None if ref.uuid is None else _clean(ref.uuid, UUID_LEN),
                        "hypervisor": _clean(ref.hypervisor, NAME_LEN),
                        "protocol": _clean(ref.protocol, PROTOCOL_LEN),
                        "first_seen": at,
                        "last_heartbeat": None,
                        "state": "unknown",
                        "state_since": at,
                    }
                )
            # ON CONFLICT DO NOTHING: another host may insert the same (migrating) VM.
            conn.execute(_upsert(conn.dialect.name, _VMS, ["key"], None), rows)
            for chunk in _chunks(missing):
                for inserted in conn.execute(
                    select(_VMS.c.id, _VMS.c.key, _VMS.c.hypervisor).where(_VMS.c.key.in_(chunk))
                ):
                    ids[inserted.key] = inserted.id
                    batch.hypervisors[inserted.id] = inserted.hypervisor

        # The last heartbeat decides only whether a claim from another host is stale: read
        # for those VMs alone (a migration), not converted for every VM of every batch.
        moved = [
            row.id
            for key, row in known.items()
            if key in claim_at and row.hypervisor != _clean(refs[key].hypervisor, NAME_LEN)
        ]
        last_heartbeats: dict[int, datetime | None] = {}
        for chunk in _chunks(moved):
            for vm_id, last in conn.execute(
                select(_VMS.c.id, _VMS.c.last_heartbeat).where(_VMS.c.id.in_(chunk))
            ):
                last_heartbeats[vm_id] = last
        changed = []
        for key, row in known.items():
            ref = refs[key]
            host = _clean(ref.hypervisor, NAME_LEN)
            if key not in claim_at:
                batch.hypervisors[row.id] = row.hypervisor
                continue
            if row.hypervisor != host:
                last = last_heartbeats.get(row.id)
                if last is not None and claim_at[key] < last.timestamp():
                    # An answer older than the current host's last heartbeat (the source's
                    # writes reaching the database after the destination's): no claim.
                    batch.hypervisors[row.id] = row.hypervisor
                    continue
                batch.host = host
                batch.event(
                    row.id,
                    _ts(claim_at[key]),
                    None,
                    Change(EventType.MIGRATED, _clean(ref.name, NAME_LEN),
                           bounded(row.hypervisor), bounded(ref.hypervisor)),
                )  # fmt: skip
            batch.hypervisors[row.id] = host
            name = _clean(ref.name, NAME_LEN)
            protocol = _clean(ref.protocol, PROTOCOL_LEN)
            # An unknown UUID does not erase a known one.
            uuid = row.uuid if ref.uuid is None else _clean(ref.uuid, UUID_LEN)
            if (row.name, row.hypervisor, row.protocol, row.uuid) != (name, host, protocol, uuid):
                changed.append(
                    {"b_id": row.id, "b_name": name, "b_hypervisor": host,
                     "b_protocol": protocol, "b_uuid": uuid}
                )  # fmt: skip
        if changed:
            conn.execute(
                update(_VMS)
                .where(_VMS.c.id == bindparam("b_id"))
                .values(
                    name=bindparam("b_name"),
                    hypervisor=bindparam("b_hypervisor"),
                    protocol=bindparam("b_protocol"),
                    uuid=bindparam("b_uuid"),
                ),
                changed,
            )
        batch.vm_ids.update(ids)

    def _load_sets(self, conn: Connection, batch: _Batch, records: Sequence[Record]) -> None:
        """Load the current rows of every (VM, kind) this batch observes: one SELECT per kind,
        and one per set diffed by ranges."""
        wanted: dict[str, set[int]] = {}
        deltas: dict[tuple[int, str], SetDelta | None] = {}
        for record in records:
            if isinstance(record, InventoryObserved):
                vm_id = batch.vm_ids[_clean(record.vm.key, KEY_LEN)]
                kind = str(record.facts.kind)
                wanted.setdefault(kind, set()).add(vm_id)
                # A set observed twice in one batch is diffed in full: the second delta is
                # against the first set, which the batch holds only in part.
                deltas[(vm_id, kind)] = record.delta if (vm_id, kind) not in deltas else None
        if not wanted:
            return
        vm_ids = sorted(set().union(*wanted.values()))
        existing: dict[tuple[int, str], bytes] = {}
        for chunk in _chunks(vm_ids):
            existing.update(
                ((row.vm_id, row.kind), row.digest)
                for row in conn.execute(
                    select(_SETS.c.vm_id, _SETS.c.kind, _SETS.c.digest).where(
                        _SETS.c.vm_id.in_(chunk)
                    )
                )
            )
        for kind, kind_vms in wanted.items():
            seen = sorted(vm_id for vm_id in kind_vms if (vm_id, kind) in existing)
            full = []
            for vm_id in seen:
                key = (vm_id, kind)
                batch.sets[key] = _SetState(items={}, exists=True)
                if not self._load_ranges(conn, batch, key, deltas[key], existing[key]):
                    full.append(vm_id)
            for chunk in _chunks(full):
                result = conn.execute(_current_rows(kind, chunk))
                # A changed package list loads all of its thousand-odd rows: straight from the
                # DBAPI cursor (plain integers and strings, nothing to convert), which costs
                # half of what SQLAlchemy's rows with named access do (`bench/store_diff.py`).
                vm_of_set, items = None, {}
                for row in result.cursor.fetchall():
                    if row[0] != vm_of_set:  # rows come grouped by VM: one lookup per VM
                        vm_of_set = row[0]
                        items = batch.sets[(vm_of_set, kind)].items
                    items[row[1]] = row[2:]

    @staticmethod
    def _load_ranges(
        conn: Connection,
        batch: _Batch,
        key: tuple[int, str],
        delta: SetDelta | None,
        stored: bytes,
    ) -> bool:
        """Load only the rows of the set's changed ranges, if its delta is against the set
        stored (`stored` is that set's digest) and diffable by ranges; False if not."""
        if delta is None or delta.previous != stored:
            return False
        observed = _range_items(delta)
        if observed is None:
            return False
        batch.ranged[key] = observed
        items = batch.sets[key].items
        vm_id, kind = key
        result = conn.execute(
            _current_rows(kind, [vm_id]).where(
                _in_ranges(_ITEMS.c.identity, delta, conn.dialect.name)
            )
        )
        for row in result.cursor.fetchall():
            items[row[1]] = row[2:]
        return True

    def _apply(self, batch: _Batch, record: Record) -> None:
        vm_id = batch.vm_ids[_clean(record.vm.key, KEY_LEN)]
        at = _ts(record.at)
        batch.host = _clean(record.vm.hypervisor, NAME_LEN)
        if isinstance(record, InventoryObserved):
            self._apply_inventory(batch, vm_id, at, record)
        elif isinstance(record, SamplesObserved):
            stamp, host = self._samples.stamp(at), batch.host
            batch.samples.extend(
                (
                    vm_id,
                    host,
                    stamp,
                    _clean(sample.metric, METRIC_LEN),
                    _clean(sample.label, NAME_LEN),
                    float(sample.value),
                )
                for sample in record.samples
                if math.isfinite(sample.value)  # SQLite stores NaN as NULL
            )
        elif isinstance(record, KindStatus):
            batch.status[(vm_id, str(record.kind))] = {
                "vm_id": vm_id,
                "kind": _clean(str(record.kind), KIND_LEN),
                "status": _clean(record.status, STATE_LEN),
                "reason": _clean(record.reason, REASON_LEN),
                "since": at,
                "last_success": None,
            }
        elif isinstance(record, KindSucceeded):
            key = (vm_id, str(record.kind))
            batch.success[key] = max(at, batch.success.get(key, at))
        elif isinstance(record, HeartbeatSeen):
            batch.heartbeats[vm_id] = max(at, batch.heartbeats.get(vm_id, at))
        elif isinstance(record, LivenessChanged):
            current = batch.hypervisors.get(vm_id)
            if current is None or current == _clean(record.vm.hypervisor, NAME_LEN):
                batch.liveness[vm_id] = {
                    "b_id": vm_id,
                    "b_state": _clean(record.new, STATE_LEN),
                    "b_since": at,
                }
            batch.event(
                vm_id,
                at,
                None,
                Change(
                    EventType.LIVENESS_CHANGED,
                    record.reason,
                    bounded(record.old),
                    bounded(record.new),
                ),
            )
        else:  # pragma: no cover - exhaustiveness
            raise StoreError(f"unknown record: {type(record).__name__}")

    def _apply_inventory(
        self, batch: _Batch, vm_id: int, at: datetime, record: InventoryObserved
    ) -> None:
        kind = str(record.facts.kind)
        ranged = batch.ranged.get((vm_id, kind))
        digest: bytes | None
        if ranged is not None:
            # Only the changed ranges were loaded: diff those; the rest is the stored set.
            observed, digest = ranged, record.facts.digest()
        else:
            observed, digest = self._observed(record)

        state = batch.sets.get((vm_id, kind))

        def open_row(identity: str, fact: Fact, value: str) -> _Item:
            name = _clean(fact.label(), NAME_LEN)
            row = {
                "vm_id": vm_id,
                "hypervisor": batch.host,
                "kind": kind,
                "name": name,
                "identity": identity,
                "value": value,
                "valid_from": at,
                "valid_to": None,
            }
            batch.opened.append(row)
            return (None, name, value, row, at)

        def close_row(item: _Item) -> None:
            pending, valid_from = item[_PENDING], item[_VALID_FROM]
            if pending is not None:
                assert valid_from is not None
                pending["valid_to"] = max(at, valid_from)
            else:
                batch.closed.append({"b_id": item[_ROW_ID], "b_to": at})

        if state is None:
            # First observation of this kind: open rows, one summary event, no per-item events.
            items = {
                ident: open_row(ident, fact, value) for ident, (fact, value) in observed.items()
            }
            batch.sets[(vm_id, kind)] = _SetState(
                items=items, exists=False, dirty=True, first_seen=at, changed_at=at, digest=digest
            )
            batch.event(
                vm_id,
                at,
                kind,
                Change(EventType.INVENTORY_FIRST_SEEN, kind, None, str(len(items))),
            )
            return

        items = state.items
        changed = False
        for identity in sorted(items.keys() - observed.keys()):
            item = items.pop(identity)
            close_row(item)
            for change in changes(kind, item[_NAME], item[_VALUE], None):
                batch.event(vm_id, at, kind, change)
            changed = True
        for identity, (fact, value) in observed.items():
            current = items.get(identity)
            if current is None:
                opened = items[identity] = open_row(identity, fact, value)
                for change in changes(kind, opened[_NAME], None, value):
                    batch.event(vm_id, at, kind, change)
                changed = True
            elif current[_VALUE] != value:
                close_row(current)
                opened = items[identity] = open_row(identity, fact, value)
                for change in changes(kind, opened[_NAME], current[_VALUE], value):
                    batch.event(vm_id, at, kind, change)
                changed = True
        state.digest = digest  # the items are now exactly the observed ones
        if ranged is not None:
            state.count = len(record.facts.items)
        if changed:
            state.dirty = True
            state.changed_at = at

    @staticmethod
    def _observed(record: InventoryObserved) -> tuple[dict[str, tuple[Fact, str]], bytes | None]:
        """(fact, value) by stored identity, and the digest the rows will have if the collector
        computed it already (None: the stored identities differ from the facts')."""
        observed: dict[str, tuple[Fact, str]] = {}
        exact = True  # the rows will be these facts, unaltered: same digest
        # Formatted again here (the runner's digest formatted them too): keeping the digest's
        # pairs with the record saved 0.7 ms of 3.5 per changed 1,500-package list, but queued
        # records held them through a restart's catch-up (up to 400,000 rows behind) and the
        # 10,000-agent fleet's peak RSS went from 810 to 987 MiB. (A `SetDelta` holds the
        # pairs of a few changed ranges, and only in steady state: see `collector.ranges`.)
        for fact in record.facts.items:
            identity = fact.identity()
            stored = _clean(identity)
            exact = exact and stored == identity
            observed[stored] = (fact, fact.value())
        # The collector has computed this digest already; recomputing it from the rows is a
        # sort and a hash of every item of every changed list.
        exact = exact and len(observed) == len(record.facts.items)
        return observed, record.facts.digest() if exact else None

    def _flush(self, conn: Connection, batch: _Batch) -> None:
        """Send the accumulated batch: one executemany per kind of write."""
        dialect = conn.dialect.name
        if batch.closed:
            to = bindparam("b_to", type_=UtcDateTime())
            conn.execute(
                update(_ITEMS)
                .where(_ITEMS.c.id == bindparam("b_id"))
                .values(valid_to=case((_ITEMS.c.valid_from > to, _ITEMS.c.valid_from), else_=to)),
                batch.closed,
            )
        if batch.opened:
            conn.execute(insert(_ITEMS), batch.opened)

        new_sets, changed_sets = [], []
        for (vm_id, kind), state in batch.sets.items():
            if not state.dirty:
                continue
            digest = state.digest or pairs_digest(
                (ident, item[_VALUE]) for ident, item in state.items.items()
            )
            if state.exists:
                changed_sets.append(
                    {
                        "b_vm_id": vm_id,
                        "b_kind": kind,
                        "b_digest": digest,
                        "b_count": len(state.items) if state.count is None else state.count,
                        "b_at": state.changed_at,
                    }
                )
            else:
                new_sets.append(
                    {
                        "vm_id": vm_id,
                        "kind": kind,
                        "digest": digest,
                        "item_count": len(state.items),
                        "first_seen": state.first_seen,
                        "changed_at": state.changed_at,
                    }
                )
        if new_sets:
            conn.execute(insert(_SETS), new_sets)
        if changed_sets:
            conn.execute(
                update(_SETS)
                .where(_SETS.c.vm_id == bindparam("b_vm_id"))
                .where(_SETS.c.kind == bindparam("b_kind"))
                .values(
                    digest=bindparam("b_digest"),
                    item_count=bindparam("b_count"),
                    changed_at=bindparam("b_at", type_=UtcDateTime()),
                ),
                changed_sets,
            )

        if batch.samples:
            self._samples.execute(conn, batch.samples)

        if batch.status:
            conn.execute(
                _upsert(
                    dialect,
                    _STATUS,
                    ["vm_id", "kind"],
                    lambda new: {
                        "status": new.status,
                        "reason": new.reason,
                        # `since` is when the status last changed, not when it was last sent.
                        "since": case(
                            (_STATUS.c.status == new.status, _STATUS.c.since), else_=new.since
                        ),
                    },
                ),
                list(batch.status.values()),
            )
        if batch.success:
            conn.execute(
                _upsert(
                    dialect,
                    _STATUS,
                    ["vm_id", "kind"],
                    lambda new: {
                        "last_success": case(
                            (
                                or_(
                                    _STATUS.c.last_success.is_(None),
                                    _STATUS.c.last_success < new.last_success,
                                ),
                                new.last_success,
                            ),
                            else_=_STATUS.c.last_success,
                        )
                    },
                ),
                [
                    {
                        "vm_id": vm_id,
                        "kind": _clean(kind, KIND_LEN),
                        "status": "ok",
                        "reason": "",
                        "since": at,
                        "last_success": at,
                    }
                    for (vm_id, kind), at in batch.success.items()
                ],
            )

        if batch.heartbeats:
            seen = bindparam("b_seen", type_=UtcDateTime())
            conn.execute(
                update(_VMS)
                .where(_VMS.c.id == bindparam("b_id"))
                .values(
                    last_heartbeat=case(
                        (
                            or_(_VMS.c.last_heartbeat.is_(None), _VMS.c.last_heartbeat < seen),
                            seen,
                        ),
                        else_=_VMS.c.last_heartbeat,
                    )
                ),
                [{"b_id": vm_id, "b_seen": at} for vm_id, at in batch.heartbeats.items()],
            )
        if batch.liveness:
            conn.execute(
                update(_VMS)
                .where(_VMS.c.id == bindparam("b_id"))
                .values(
                    state=bindparam("b_state"),
                    state_since=bindparam("b_since", type_=UtcDateTime()),
                ),
                list(batch.liveness.values()),
            )
        if batch.events:
            conn.execute(insert(_EVENTS), batch.events)

    # ------------------------------------------------------------------ digests

    def current_digests(self) -> dict[tuple[str, FactKind], bytes]:
        """(VM key, kind) → digest of the current rows, equal to `FactSet.digest()`.

        Read from `inventory_sets`, which every write keeps equal to the digest of the rows it
        leaves current: the collector warm-starts after a restart from a small table.
        """
        out: dict[tuple[str, FactKind], bytes] = {}
        kinds = {str(k): k for k in FactKind}
        with self._engine.connect() as conn:
            for row in conn.execute(
                select(_VMS.c.key, _SETS.c.kind, _SETS.c.digest).join(
                    _VMS, _VMS.c.id == _SETS.c.vm_id
                )
            ):
                kind = kinds.get(row.kind)
                if kind is not None:
                    out[(row.key, kind)] = bytes(row.digest)
        return out

    def recompute_digests(self) -> dict[tuple[str, FactKind], bytes]:
        """The same digests computed from the current rows themselves (a consistency check).

        Reads every current row: for tests and repairs, not for start-up.
        """
        pairs: dict[tuple[str, str], list[tuple[str, str]]] = {}
        with self._engine.connect() as conn:
            for key, kind, _ in conn.execute(
                select(_VMS.c.key, _SETS.c.kind, _SETS.c.vm_id).join(
                    _VMS, _VMS.c.id == _SETS.c.vm_id
                )
            ):
                pairs[(key, kind)] = []
            result = conn.execution_options(stream_results=True, yield_per=10_000).execute(
                select(_VMS.c.key, _ITEMS.c.kind, _ITEMS.c.identity, _ITEMS.c.value)
                .join(_VMS, _VMS.c.id == _ITEMS.c.vm_id)
                .where(_ITEMS.c.valid_to.is_(None))
            )
            for key, kind, identity, value in result:
                pairs.setdefault((key, kind), []).append((identity, value))
        kinds = {str(k): k for k in FactKind}
        return {
            (key, kinds[kind]): pairs_digest(items)
            for (key, kind), items in pairs.items()
            if kind in kinds
        }

    # ------------------------------------------------------------------ queries

    def _vm_row(self, conn: Connection, domain: str) -> AnyRow:
        rows = list(
            conn.execute(
                select(_VMS).where(
                    or_(_VMS.c.key == domain, _VMS.c.uuid == domain, _VMS.c.name == domain)
                )
            )
        )
        for column in ("key", "uuid", "name"):
            matches = [row for row in rows if getattr(row, column) == domain]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise AmbiguousDomain(domain, sorted(row.key for row in matches))
        raise DomainNotFound(domain)

    def _vm_infos(self, conn: Connection, vm_rows: Sequence[AnyRow]) -> list[VmInfo]:
        if not vm_rows:
            return []
        ids = [row.id for row in vm_rows]
        everyone = len(ids) > IN_CHUNK

        def only(column: ColumnElement[int]) -> Iterable[ColumnElement[bool]]:
            return () if everyone else (column.in_(ids),)

        kinds = {str(k): k for k in FactKind}
        states: dict[int, dict[FactKind, KindState]] = {}
        for row in conn.execute(select(_STATUS).where(*only(_STATUS.c.vm_id))):
            kind = kinds.get(row.kind)
            if kind is not None:
                states.setdefault(row.vm_id, {})[kind] = KindState(
                    row.status, row.reason, row.since, row.last_success
                )
        os_names: dict[int, str] = {}
        hostnames: dict[int, str] = {}
        for row in conn.execute(
            select(_ITEMS.c.vm_id, _ITEMS.c.kind, _ITEMS.c.value)
            .where(_ITEMS.c.kind.in_([str(FactKind.OS), str(FactKind.HOSTNAME)]))
            .where(_ITEMS.c.valid_to.is_(None))
            .where(*only(_ITEMS.c.vm_id))
        ):
            data = _json(row.value)
            if row.kind == FactKind.OS:
                os_names[row.vm_id] = str(data.get("pretty_name") or data.get("name") or "")
            else:
                hostnames[row.vm_id] = str(data.get("name") or data.get("fqdn") or "")
        return [
            VmInfo(
                key=row.key,
                name=row.name,
                uuid=row.uuid,
                hypervisor=row.hypervisor,
                protocol=row.protocol,
                state=row.state,
                state_since=row.state_since,
                first_seen=row.first_seen,
                last_heartbeat=row.last_heartbeat,
                os_pretty_name=os_names.get(row.id),
                hostname=hostnames.get(row.id),
                kinds=states.get(row.id, {}),
            )
            for row in vm_rows
        ]

    def list_vms(self) -> list[VmInfo]:
        """Every known VM, ordered by name then key."""
        with self._engine.connect() as conn:
            rows = list(conn.execute(select(_VMS).order_by(_VMS.c.name, _VMS.c.key)))
            return self._vm_infos(conn, rows)

    def vm(self, domain: str) -> VmInfo:
        """One VM by key, UUID or name."""
        with self._engine.connect() as conn:
            return self._vm_infos(conn, [self._vm_row(conn, domain)])[0]

    def inventory(self, domain: str, at: datetime | None = None) -> Inventory:
        """A VM's current inventory, or the rows valid at `at` (valid_from <= at < valid_to)."""
        with self._engine.connect() as conn:
            vm_row = self._vm_row(conn, domain)
            query = select(_ITEMS.c.kind, _ITEMS.c.identity, _ITEMS.c.value).where(
                _ITEMS.c.vm_id == vm_row.id
            )
            if at is None:
                query = query.where(_ITEMS.c.valid_to.is_(None))
            else:
                at = _aware(at)
                query = query.where(_ITEMS.c.valid_from <= at).where(
                    or_(_ITEMS.c.valid_to.is_(None), _ITEMS.c.valid_to > at)
                )
            facts: dict[FactKind, list[dict[str, Any]]] = {}
            kinds = {str(k): k for k in FactKind}
            rows = sorted(conn.execute(query), key=lambda row: (row.kind, row.identity))
            for row in rows:
                kind = kinds.get(row.kind)
                if kind is not None:
                    facts.setdefault(kind, []).append(_json(row.value))
            return Inventory(vm=self._vm_infos(conn, [vm_row])[0], at=at, facts=facts)

    def history(
        self,
        domain: str,
        kind: FactKind | str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 1000,
    ) -> list[HistoryEntry]:
        """Validity rows of a VM opened or closed in [since, until), newest first."""
        kinds = {str(k): k for k in FactKind}
        with self._engine.connect() as conn:
            vm_row = self._vm_row(conn, domain)
            query = select(_ITEMS).where(_ITEMS.c.vm_id == vm_row.id)
            if kind is not None:
                query = query.where(_ITEMS.c.kind == str(kind))
            if since is not None or until is not None:
                query = query.where(
                    or_(
                        _window(_ITEMS.c.valid_from, since, until),
                        and_(
                            _ITEMS.c.valid_to.is_not(None),
                            _window(_ITEMS.c.valid_to, since, until),
                        ),
                    )
                )
            query = query.order_by(_ITEMS.c.valid_from.desc(), _ITEMS.c.id.desc()).limit(limit)
            return [
                HistoryEntry(
                    kind=kinds[row.kind],
                    name=row.name,
                    identity=row.identity,
                    value=_json(row.value),
                    valid_from=row.valid_from,
                    valid_to=row.valid_to,
                )
                for row in conn.execute(query)
                if row.kind in kinds
            ]

    def events(
        self,
        domain: str | None = None,
        type: EventType | str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 1000,
        *,
        kind: FactKind | str | None = None,
    ) -> list[EventView]:
        """Events in [since, until), newest first."""
        with self._engine.connect() as conn:
            query = select(_EVENTS, _VMS.c.name.label("domain"), _VMS.c.key.label("vm_key")).join(
                _VMS, _VMS.c.id == _EVENTS.c.vm_id
            )
            if domain is not None:
                query = query.where(_EVENTS.c.vm_id == self._vm_row(conn, domain).id)
            if type is not None:
                query = query.where(_EVENTS.c.type == str(type))
            if kind is not None:
                query = query.where(_EVENTS.c.kind == str(kind))
            if since is not None or until is not None:
                query = query.where(_window(_EVENTS.c.at, since, until))
            query = query.order_by(_EVENTS.c.at.desc(), _EVENTS.c.id.desc()).limit(limit)
            return [
                EventView(
                    id=row.id,
                    at=row.at,
                    domain=row.domain,
                    vm_key=row.vm_key,
                    type=row.type,
                    kind=row.kind,
                    subject=row.subject,
                    old=row.old,
                    new=row.new,
                )
                for row in conn.execute(query)
            ]

    def packages(self, name: str, version: str | None = None) -> list[PackageHit]:
        """Which VMs have package `name` now (optionally exactly `version`)."""
        from storage import timetravel  # noqa: PLC0415 - timetravel builds on Store

        return timetravel.packages(self, name, version=version)

    def samples(
        self,
        domain: str,
        metric: str,
        since: datetime | None = None,
        *,
        until: datetime | None = None,
        label: str | None = None,
        limit: int = 100_000,
    ) -> list[SamplePoint]:
        """A VM's samples of one metric, oldest first."""
        with self._engine.connect() as conn:
            vm_id = self._vm_row(conn, domain).id
            query = (
                select(_SAMPLES.c.at, _SAMPLES.c.label, _SAMPLES.c.value)
                .where(_SAMPLES.c.vm_id == vm_id)
                .where(_SAMPLES.c.metric == metric)
            )
            if label is not None:
                query = query.where(_SAMPLES.c.label == label)
            if since is not None or until is not None:
                query = query.where(_window(_SAMPLES.c.at, since, until))
            query = query.order_by(_SAMPLES.c.at, _SAMPLES.c.id).limit(limit)
            return [SamplePoint(row.at, row.label, row.value) for row in conn.execute(query)]

    def prune_samples(self, before: datetime) -> int:
        """Delete samples older than `before` (retention); returns the number deleted."""
        with self._engine.connect() as conn:
            conn.execution_options(**{db.WRITE_TRANSACTION: True})
            with conn.begin():
                result = conn.execute(delete(_SAMPLES).where(_SAMPLES.c.at < _aware(before)))
                return result.rowcount


def _window(column: Any, since: datetime | None, until: datetime | None) -> ColumnElement[bool]:
    conditions = []
    if since is not None:
        conditions.append(column >= _aware(since))
    if until is not None:
        conditions.append(column < _aware(until))
    return and_(*conditions)


def _json(value: str) -> dict[str, Any]:
    try:
        data = json.loads(value)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
