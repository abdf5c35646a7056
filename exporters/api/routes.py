"""The /api/v1 routes: domains from the in-memory fleet, history from the database.

The domain list answers from `FleetState` (what `/metrics` shows, no database work); every
other path reads the store in a worker thread (`asyncio.to_thread`), so a slow query never
stalls polling on the shared event loop. Parameters are validated and bounded before anything
runs; user text reaches the database only as bound parameters.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Final, TypeVar

from fastapi import APIRouter, Path, Query
from sqlalchemy import select

from collector.config import ConfigError, parse_duration
from collector.facts import FactKind
from collector.state import FleetState
from exporters.api import models
from exporters.api.problems import problem, responses
from exporters.views import domain_summary
from storage import retention, timetravel
from storage.models import Vm
from storage.repository import Store

MAX_LIMIT: Final = 1000
MAX_OFFSET: Final = 100_000
#: Samples: points per page, and the smallest bucket a request may ask for.
MAX_SAMPLE_LIMIT: Final = 10_000
MIN_STEP_SECONDS: Final = 1.0
DEFAULT_SAMPLE_WINDOW: Final = timedelta(days=1)

Kind = StrEnum("Kind", {k.name: k.value for k in FactKind})  # type: ignore[misc]
T = TypeVar("T")

DomainPath = Annotated[
    str, Path(min_length=1, max_length=255, description="VM name, UUID or store key")
]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="most items per page")]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="items to skip")]
Since = Annotated[datetime | None, Query(description="RFC 3339; from this time (inclusive)")]
Until = Annotated[datetime | None, Query(description="RFC 3339; before this time")]
Token = Annotated[str | None, Query(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")]
Version = Annotated[str | None, Query(min_length=1, max_length=255)]


class DomainState(StrEnum):
    unknown = "unknown"
    up = "up"
    late = "late"
    down = "down"
    gone = "gone"


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _page(items: Sequence[T], limit: int, offset: int) -> tuple[list[T], int | None]:
    """Items [offset, offset+limit) of a list read with one extra row, and the next offset."""
    window = list(items[offset : offset + limit + 1])
    more = len(window) > limit
    return window[:limit], (offset + limit if more else None)


async def _db(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await asyncio.to_thread(func, *args, **kwargs)


def build_router(fleet: FleetState, store: Store) -> APIRouter:
    api = APIRouter(prefix="/api/v1", tags=["api"])

    @api.get(
        "/domains",
        response_model=models.DomainPage,
        responses=responses(422),
        summary="Every known VM: liveness, OS, last heartbeat, per-kind availability",
    )
    async def list_domains(
        state: Annotated[DomainState | None, Query(description="only this state")] = None,
        protocol: Token = None,
        limit: Limit = 100,
        offset: Offset = 0,
    ) -> dict[str, Any]:
        summaries = sorted(
            (domain_summary(vm) for vm in list(fleet.vms.values())), key=lambda d: d["domain"]
        )
        if state is not None:
            summaries = [d for d in summaries if d["state"] == state.value]
        if protocol is not None:
            summaries = [d for d in summaries if d["protocol"] == protocol]
        items, next_offset = _page(summaries, limit, offset)
        return {
            "items": items,
            "total": len(summaries),
            "limit": limit,
            "offset": offset,
            "next_offset": next_offset,
        }

    @api.get(
        "/domains/{domain}",
        response_model=models.DomainInventory,
        responses=responses(404, 409, 422),
        summary="A VM's inventory, now or as it was at a past time",
    )
    async def get_domain(
        domain: DomainPath,
        at: Annotated[
            datetime | None, Query(description="RFC 3339: the inventory as it was then")
        ] = None,
    ) -> dict[str, Any]:
        inventory = await _db(store.inventory, domain, _utc(at))
        vm = inventory.vm
        return {
            "domain": vm.name,
            "key": vm.key,
            "uuid": vm.uuid,
            "hypervisor": vm.hypervisor,
            "protocol": vm.protocol,
            "state": vm.state,
            "state_since": vm.state_since,
            "last_heartbeat": vm.last_heartbeat,
            "at": inventory.at,
            "inventory": {kind.value: rows for kind, rows in inventory.facts.items()},
            "facts": {kind.value: dataclasses.asdict(s) for kind, s in inventory.status.items()},
        }

    @api.get(
        "/domains/{domain}/history",
        response_model=models.HistoryPage,
        responses=responses(404, 409, 422),
        summary="Validity rows of a VM opened or closed in [since, until), newest first",
    )
    async def history(
        domain: DomainPath,
        *,
        kind: Annotated[Kind | None, Query(description="only this fact kind")] = None,
        since: Since = None,
        until: Until = None,
        limit: Limit = 100,
        offset: Offset = 0,
    ) -> dict[str, Any]:
        rows = await _db(
            store.history,
            domain,
            kind=None if kind is None else str(kind.value),
            since=_utc(since),
            until=_utc(until),
            limit=offset + limit + 1,
        )
        items, next_offset = _page(rows, limit, offset)
        return {
            "domain": domain,
            "items": [dataclasses.asdict(r) | {"kind": r.kind.value} for r in items],
            "limit": limit,
            "offset": offset,
            "next_offset": next_offset,
        }

    @api.get(
        "/domains/{domain}/diff",
        response_model=models.DiffPage,
        response_model_by_alias=True,
        responses=responses(404, 409, 422),
        summary="What changed in a VM's inventory between two times",
    )
    async def diff(
        domain: DomainPath,
        *,
        since: Annotated[datetime, Query(alias="from", description="RFC 3339")],
        until: Annotated[
            datetime | None, Query(alias="to", description="RFC 3339; default now")
        ] = None,
        kind: Annotated[Kind | None, Query(description="only this fact kind")] = None,
        limit: Limit = 100,
        offset: Offset = 0,
    ) -> dict[str, Any]:
        start, end = _utc(since), _utc(until) or datetime.now(UTC)
        assert start is not None
        changes = await _db(
            timetravel.diff,
            store,
            domain,
            start,
            end,
            kind=None if kind is None else FactKind(kind.value),
        )
        items, next_offset = _page(changes, limit, offset)
        return {
            "domain": domain,
            "from": start,
            "to": end,
            "items": [dataclasses.asdict(c) | {"kind": c.kind.value} for c in items],
            "limit": limit,
            "offset": offset,
            "next_offset": next_offset,
        }

    @api.get(
        "/domains/{domain}/samples",
        response_model=models.SamplePage,
        responses=responses(404, 409, 422),
        summary="Memory / filesystem / network history of a VM, raw or in buckets",
    )
    async def samples(
        domain: DomainPath,
        *,
        metric: Annotated[
            str,
            Query(
                min_length=1,
                max_length=64,
                pattern=r"^[a-z][a-z0-9_]*$",
                description="e.g. memory_available_bytes, filesystem_used_bytes",
            ),
        ],
        since: Since = None,
        until: Until = None,
        step: Annotated[
            str | None,
            Query(
                max_length=16,
                description='bucket width: seconds or a duration such as "5m", "1h", "1d"',
            ),
        ] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_SAMPLE_LIMIT)] = 1000,
        offset: Offset = 0,
    ) -> Any:
        end = _utc(until) or datetime.now(UTC)
        start = _utc(since) or end - DEFAULT_SAMPLE_WINDOW
        seconds: float | None = None
        if step:
            try:
                seconds = parse_duration(step, "step")
            except ConfigError as exc:
                return _invalid("step", str(exc))
            if seconds < MIN_STEP_SECONDS:
                return _invalid("step", f"must be at least {MIN_STEP_SECONDS:g}s")
        if start >= end:
            return _invalid("since", "must be before until")
        vm = await _db(store.vm, domain)
        points = await _db(
            _series, store, vm.key, metric, start, end, step=seconds, limit=offset + limit + 1
        )
        items, next_offset = _page(points, limit, offset)
        return {
            "domain": vm.name,
            "metric": metric,
            "since": start,
            "until": end,
            "step": seconds,
            "items": [dataclasses.asdict(p) for p in items],
            "limit": limit,
            "offset": offset,
            "next_offset": next_offset,
        }

    @api.get(
        "/events",
        response_model=models.EventPage,
        responses=responses(404, 409, 422),
        summary="Change and liveness events, newest first",
    )
    async def events(
        *,
        domain: Annotated[str | None, Query(min_length=1, max_length=255)] = None,
        type: Annotated[
            str | None,
            Query(
                min_length=1,
                max_length=32,
                pattern=r"^[a-z][a-z0-9_]*$",
                description="e.g. package_upgraded",
            ),
        ] = None,
        kind: Annotated[Kind | None, Query(description="only events of this kind")] = None,
        since: Since = None,
        until: Until = None,
        limit: Limit = 100,
        offset: Offset = 0,
    ) -> dict[str, Any]:
        rows = await _db(
            store.events,
            domain=domain,
            type=type,
            since=_utc(since),
            until=_utc(until),
            limit=offset + limit + 1,
            kind=None if kind is None else str(kind.value),
        )
        items, next_offset = _page(rows, limit, offset)
        return {
            "items": [dataclasses.asdict(e) for e in items],
            "limit": limit,
            "offset": offset,
            "next_offset": next_offset,
        }

    @api.get(
        "/packages",
        response_model=models.PackagePage,
        responses=responses(422),
        summary="Which VMs have a package, at a version or older than one, now or at a time",
    )
    async def packages(
        *,
        name: Annotated[str, Query(min_length=1, max_length=255, description="exact name")],
        version: Annotated[
            str | None, Query(min_length=1, max_length=255, description="exactly this version")
        ] = None,
        older_than: Annotated[
            str | None,
            Query(
                min_length=1,
                max_length=255,
                description="versions lower than this, by the VM's package manager (dpkg, rpm)",
            ),
        ] = None,
        at: Annotated[datetime | None, Query(description="RFC 3339: as it was then")] = None,
        limit: Limit = 100,
        offset: Offset = 0,
    ) -> dict[str, Any]:
        when = _utc(at)
        hits = await _db(
            timetravel.packages, store, name, version=version, older_than=older_than, at=when
        )
        items, next_offset = _page(hits, limit, offset)
        return {
            "name": name,
            "at": when,
            "items": [dataclasses.asdict(h) for h in items],
            "limit": limit,
            "offset": offset,
            "next_offset": next_offset,
        }

    @api.get(
        "/alerts",
        response_model=models.AlertPage,
        responses=responses(422),
        summary="guestwatch's own alerts with their delivery state, most recently changed first",
    )
    async def list_alerts(
        state: Token = None,
        domain: Annotated[str | None, Query(min_length=1, max_length=255)] = None,
        limit: Limit = 100,
        offset: Offset = 0,
    ) -> dict[str, Any]:
        rows = await _db(store.alerts, state=state, domain=domain, limit=offset + limit + 1)
        items, next_offset = _page(rows, limit, offset)
        return {
            "items": [dataclasses.asdict(a) for a in items],
            "limit": limit,
            "offset": offset,
            "next_offset": next_offset,
        }

    return api


def _invalid(parameter: str, reason: str) -> Any:
    return problem(
        422,
        "Invalid request",
        f"{parameter}: {reason}",
        errors=[{"parameter": parameter, "in": "query", "reason": reason[:200]}],
    )


def _series(
    store: Store,
    vm_key: str,
    metric: str,
    since: datetime,
    until: datetime,
    *,
    step: float | None,
    limit: int,
) -> list[retention.SeriesPoint]:
    with store.engine.connect() as conn:
        vm_id = conn.execute(select(Vm.id).where(Vm.key == vm_key)).scalar_one()
    return retention.series(store.engine, vm_id, metric, since, until, step=step, limit=limit)
