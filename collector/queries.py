"""The CLI's history queries: `vms`, `show`, `history`, `events` (tables or JSON)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from collector.config import Config
from collector.facts import FactKind
from collector.tables import format_table
from storage.repository import DomainNotFound, Store

LATEST_SAMPLE_WINDOW = timedelta(days=1)


@contextmanager
def _store(config: Config) -> Iterator[Store]:
    store = Store(config.storage.url)
    try:
        yield store
    finally:
        store.close()


def _emit_json(data: Any) -> None:
    def default(value: object) -> object:
        if isinstance(value, datetime):
            return value.astimezone(UTC).isoformat()
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return dataclasses.asdict(value)
        return str(value)

    json.dump(data, sys.stdout, indent=2, default=default)
    sys.stdout.write("\n")


def _not_found(exc: DomainNotFound) -> int:
    print(f"guestwatch: {exc}", file=sys.stderr)
    return 1


def vms(config: Config, args: argparse.Namespace) -> int:
    with _store(config) as store:
        rows = store.list_vms()
    if args.output == "json":
        _emit_json([dataclasses.asdict(vm) for vm in rows])
        return 0
    print(
        format_table(
            ["domain", "state", "since", "last heartbeat", "os", "unavailable"],
            [
                [
                    vm.name,
                    vm.state,
                    vm.state_since,
                    vm.last_heartbeat,
                    vm.os_pretty_name,
                    ",".join(
                        sorted(k.value for k, s in vm.kinds.items() if s.status == "unavailable")
                    )
                    or None,
                ]
                for vm in sorted(rows, key=lambda v: v.name)
            ],
            max_cell=24,
        )
    )
    return 0


#: What `show` prints per kind: (column headers, fields of the stored fact dict).
SHOW_COLUMNS: dict[FactKind, tuple[tuple[str, ...], tuple[str, ...]]] = {
    FactKind.FILESYSTEMS: (
        ("mountpoint", "type", "size", "used"),
        ("mountpoint", "fstype", "size_bytes", "used_bytes"),
    ),
    FactKind.DISKS: (
        ("disk", "partition", "bus", "serial"),
        ("name", "partition", "bus_type", "serial"),
    ),
    FactKind.NETWORK: (("interface", "mac", "addresses"), ("name", "mac", "addresses")),
    FactKind.USERS: (("user", "domain", "login time"), ("name", "domain", "login_time")),
    FactKind.PACKAGES: (
        ("package", "version", "arch", "manager"),
        ("name", "version", "arch", "manager"),
    ),
}


def _cell(field: str, value: Any) -> Any:
    if field == "addresses" and isinstance(value, list):
        return " ".join(
            f"{a.get('address')}/{a.get('prefix')}" for a in value if isinstance(a, dict)
        )
    if field.endswith("_bytes") and isinstance(value, int | float):
        return _human_bytes(value)
    if field == "login_time" and isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    return value


def _human_bytes(value: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1024
    return str(value)


def show(config: Config, args: argparse.Namespace) -> int:
    with _store(config) as store:
        try:
            inv = store.inventory(args.domain, args.at)
            measured = _latest_samples(store, args.domain, args.at)
        except DomainNotFound as exc:
            return _not_found(exc)
    for item in inv.facts.get(FactKind.FILESYSTEMS, []):
        item.setdefault("used_bytes", measured.get(("filesystem_used_bytes", item["mountpoint"])))
    for item in inv.facts.get(FactKind.MEMORY, []):
        item.setdefault("available_bytes", measured.get(("memory_available_bytes", "")))
    if args.output == "json":
        _emit_json(dataclasses.asdict(inv))
        return 0
    vm = inv.vm
    when = f" at {inv.at.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z" if inv.at else ""
    print(f"{vm.name}{when}  ({vm.protocol} on {vm.hypervisor}, key {vm.key})")
    print(
        f"agent: {vm.state} since {vm.state_since:%Y-%m-%d %H:%M:%S}, last heartbeat "
        f"{vm.last_heartbeat or '-'}"
    )
    for kind in (
        FactKind.OS,
        FactKind.HOSTNAME,
        FactKind.TIMEZONE,
        FactKind.CPUS,
        FactKind.MEMORY,
        FactKind.AGENT,
    ):
        for item in inv.facts.get(kind, []):
            detail = ", ".join(f"{k}={_cell(k, v)}" for k, v in item.items() if v not in ("", None))
            print(f"{kind.value}: {detail}")
    for kind, (headers, fields) in SHOW_COLUMNS.items():
        items = inv.facts.get(kind, [])
        print(f"\n{kind.value} ({len(items)})")
        if items:
            rows = [[_cell(f, item.get(f)) for f in fields] for item in items]
            print(format_table(headers, sorted(rows, key=lambda r: str(r[0]))))
    unavailable = {k: s for k, s in inv.status.items() if s.status != "ok"}
    if unavailable:
        print("\nnot available:")
        for kind, state in sorted(unavailable.items()):
            print(f"  {kind.value}: {state.status} ({state.reason})")
    return 0


def _latest_samples(store: Store, domain: str, at: datetime | None) -> dict[tuple[str, str], float]:
    """Newest measurement per (metric, label) up to `at`: `show` prints them beside the
    inventory, which keeps only what is not measured every poll."""
    until = at or datetime.now(UTC)
    latest: dict[tuple[str, str], float] = {}
    for metric in ("filesystem_used_bytes", "memory_available_bytes"):
        since = until - LATEST_SAMPLE_WINDOW
        for point in store.samples(domain, metric, since, until=until):
            latest[(metric, point.label)] = point.value  # ordered oldest first
    return latest


def history(config: Config, args: argparse.Namespace) -> int:
    with _store(config) as store:
        try:
            rows = store.history(args.domain, kind=args.kind, since=args.since)
        except DomainNotFound as exc:
            return _not_found(exc)
    if args.output == "json":
        _emit_json([dataclasses.asdict(r) for r in rows])
        return 0
    print(
        format_table(
            ["kind", "item", "from", "to", "value"],
            [
                [
                    r.kind.value,
                    r.name,
                    r.valid_from,
                    r.valid_to or "current",
                    json.dumps(r.value, sort_keys=True),
                ]
                for r in rows
            ],
            max_cell=30,
        )
    )
    return 0


def events(config: Config, args: argparse.Namespace) -> int:
    with _store(config) as store:
        rows = store.events(domain=args.domain, type=args.type, since=args.since, limit=args.limit)
    if args.output == "json":
        _emit_json([dataclasses.asdict(r) for r in rows])
        return 0
    print(
        format_table(
            ["time", "domain", "event", "subject", "old", "new"],
            [[e.at, e.domain, e.type, e.subject, e.old, e.new] for e in rows],
            max_cell=22,
        )
    )
    return 0
