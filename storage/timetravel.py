"""History queries over the validity rows: what changed between two times, and which VMs had
a package (at a version, older than one) now or at a past time.

Both read the rows valid at a time T (`valid_from <= T < valid_to`, NULL = still valid), the same
predicate as `Store.inventory(at=)`. Version filters run in Python after the name lookup: the
order is the package manager's (`storage.versions`), which no SQL collation gives, and a name
matches at most one row per VM and architecture.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, cast

from sqlalchemy import ColumnElement, Connection, Table, and_, or_, select

from collector.facts import FactKind
from storage.models import InventoryItem, Vm
from storage.queries import PackageHit
from storage.repository import Store
from storage.versions import compare

_ITEMS = cast(Table, InventoryItem.__table__)
_VMS = cast(Table, Vm.__table__)

#: Most package rows one fleet-wide search reads (10,000 VMs x a few architectures).
MAX_PACKAGE_ROWS: Final = 100_000


@dataclass(frozen=True, slots=True)
class DiffEntry:
    """One item that differs between two times: added, removed or changed."""

    kind: FactKind
    name: str
    identity: str
    change: str
    old: dict[str, Any] | None
    new: dict[str, Any] | None


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def valid_at(at: datetime | None) -> ColumnElement[bool]:
    """Rows valid at `at`, or the current rows when `at` is None."""
    if at is None:
        return _ITEMS.c.valid_to.is_(None)
    at = _aware(at)
    return and_(_ITEMS.c.valid_from <= at, or_(_ITEMS.c.valid_to.is_(None), _ITEMS.c.valid_to > at))


def _vm_id(conn: Connection, store: Store, domain: str) -> int:
    key = store.vm(domain).key  # raises DomainNotFound / AmbiguousDomain
    return int(conn.execute(select(_VMS.c.id).where(_VMS.c.key == key)).scalar_one())


def _json(value: str) -> dict[str, Any]:
    try:
        data = json.loads(value)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def diff(
    store: Store,
    domain: str,
    since: datetime,
    until: datetime,
    kind: FactKind | None = None,
) -> list[DiffEntry]:
    """What changed in a VM's inventory from `since` to `until` (None = now), by kind and item."""
    kinds = {str(k): k for k in FactKind}
    with store.engine.connect() as conn:
        vm_id = _vm_id(conn, store, domain)

        def rows_at(at: datetime | None) -> dict[tuple[str, str], tuple[str, str]]:
            query = select(_ITEMS.c.kind, _ITEMS.c.identity, _ITEMS.c.name, _ITEMS.c.value).where(
                _ITEMS.c.vm_id == vm_id, valid_at(at)
            )
            if kind is not None:
                query = query.where(_ITEMS.c.kind == str(kind))
            return {(r.kind, r.identity): (r.name, r.value) for r in conn.execute(query)}

        before, after = rows_at(since), rows_at(until)
    out: list[DiffEntry] = []
    for key in sorted(before.keys() | after.keys()):
        kind_name, identity = key
        if kind_name not in kinds:
            continue
        old, new = before.get(key), after.get(key)
        if old is not None and new is not None and old[1] == new[1]:
            continue
        change = "added" if old is None else "removed" if new is None else "changed"
        out.append(
            DiffEntry(
                kind=kinds[kind_name],
                name=(new or old or ("", ""))[0],
                identity=identity,
                change=change,
                old=None if old is None else _json(old[1]),
                new=None if new is None else _json(new[1]),
            )
        )
    return out


def packages(
    store: Store,
    name: str,
    *,
    version: str | None = None,
    older_than: str | None = None,
    at: datetime | None = None,
) -> list[PackageHit]:
    """VMs that have (had, at `at`) package `name`; `version` exact, `older_than` per manager.

    Ordered by domain, VM key and architecture. `since` is when the row (this version) appeared.
    """
    query = (
        select(
            _ITEMS.c.value,
            _ITEMS.c.valid_from,
            _VMS.c.name.label("domain"),
            _VMS.c.key.label("vm_key"),
        )
        .join(_VMS, _VMS.c.id == _ITEMS.c.vm_id)
        .where(_ITEMS.c.kind == str(FactKind.PACKAGES), _ITEMS.c.name == name, valid_at(at))
        .order_by(_VMS.c.name, _VMS.c.key, _ITEMS.c.identity)
        .limit(MAX_PACKAGE_ROWS)
    )
    hits: list[PackageHit] = []
    with store.engine.connect() as conn:
        for row in conn.execute(query):
            data = _json(row.value)
            hit = PackageHit(
                domain=row.domain,
                vm_key=row.vm_key,
                name=str(data.get("name", name)),
                version=str(data.get("version", "")),
                arch=str(data.get("arch", "")),
                manager=str(data.get("manager", "")),
                since=row.valid_from,
            )
            if version is not None and hit.version != version:
                continue
            if older_than is not None and compare(hit.version, older_than, hit.manager) >= 0:
                continue
            hits.append(hit)
    return hits
