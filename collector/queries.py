"""The CLI's history queries: `vms`, `show`, `history`, `events`, `diff`, `packages` and
`db prune`; each prints a table readable at 80 columns, JSON or CSV (`--output`)."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from collector.config import Config
from collector.facts import FactKind
from collector.tables import cell, format_table
from storage import retention, timetravel
from storage.repository import DomainNotFound, Store

LATEST_SAMPLE_WINDOW = timedelta(days=1)
#: Tables fit a terminal of this width: the widest column gives way first.
TABLE_WIDTH = 80
MIN_COLUMN = 8
#: A CSV cell starting with one of these is a formula to a spreadsheet: guest text is hostile.
_CSV_FORMULA = ("=", "+", "-", "@", "\t", "\r")


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


def fit_table(headers: list[str], rows: list[list[Any]], width: int = TABLE_WIDTH) -> str:
    """`format_table` narrowed to `width`: the widest column is cut (with an ellipsis) first."""
    texts = [[cell(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in texts)]) for i, h in enumerate(headers)]
    while sum(widths) + 2 * (len(widths) - 1) > width:
        widest = max(range(len(widths)), key=lambda i: widths[i])
        if widths[widest] <= MIN_COLUMN:
            break
        widths[widest] -= 1
    cut = [
        [t if len(t) <= w else t[: w - 1] + "…" for t, w in zip(row, widths, strict=True)]
        for row in texts
    ]
    return format_table(headers, cut, max_cell=max(widths, default=MIN_COLUMN))


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, dict | list):
        text = json.dumps(value, sort_keys=True, default=str)
    else:
        text = str(value)
    if text.startswith(_CSV_FORMULA):
        try:
            float(text)
        except ValueError:
            return "'" + text
    return text


def _output(args: argparse.Namespace, headers: list[str], rows: list[list[Any]], data: Any) -> None:
    """Print `rows` as a table or CSV, or `data` as JSON, as `--output` asks."""
    if args.output == "json":
        _emit_json(data)
    elif args.output == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(headers)
        writer.writerows([[_csv_cell(v) for v in row] for row in rows])
    else:
        print(fit_table(headers, rows))


def _not_found(exc: DomainNotFound) -> int:
    print(f"guestwatch: {exc}", file=sys.stderr)
    return 1


def vms(config: Config, args: argparse.Namespace) -> int:
    with _store(config) as store:
        rows = sorted(store.list_vms(), key=lambda v: v.name)
    _output(
        args,
        ["domain", "state", "last heartbeat", "os", "unavailable"],
        [
            [
                vm.name,
                vm.state,
                vm.last_heartbeat,
                vm.os_pretty_name,
                ",".join(sorted(k.value for k, s in vm.kinds.items() if s.status == "unavailable"))
                or None,
            ]
            for vm in rows
        ],
        [dataclasses.asdict(vm) for vm in rows],
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
    if field in ("login_time", "since") and isinstance(value, int | float):
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
    if args.output == "csv":
        _output(
            args,
            ["kind", "item"],
            [[kind.value, item] for kind, items in inv.facts.items() for item in items],
            None,
        )
        return 0
    vm = inv.vm
    when = f" at {inv.at.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z" if inv.at else ""
    print(f"{vm.name}{when}  ({vm.protocol} on {vm.hypervisor}, key {vm.key})"[:TABLE_WIDTH])
    agent = f"agent: {vm.state} since {cell(vm.state_since)}, last heartbeat "
    print((agent + cell(vm.last_heartbeat))[:TABLE_WIDTH])
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
            print(f"{kind.value}: {detail}"[:TABLE_WIDTH])
    spice = inv.facts.get(FactKind.SPICE, [])
    for item in spice:
        since = _cell("since", item.get("since"))
        print(f"spice: {item.get('flavour')} agent session since {since}"[:TABLE_WIDTH])
        caps = " ".join(str(c) for c in item.get("capabilities") or [])
        print(textwrap.fill(caps, TABLE_WIDTH, initial_indent="  ", subsequent_indent="  "))
    if not spice and FactKind.SPICE in inv.status:
        print("spice: no session")
    for kind, (headers, fields) in SHOW_COLUMNS.items():
        items = inv.facts.get(kind, [])
        print(f"\n{kind.value} ({len(items)})")
        if items:
            rows = [[_cell(f, item.get(f)) for f in fields] for item in items]
            print(fit_table(list(headers), sorted(rows, key=lambda r: str(r[0]))))
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
    _output(
        args,
        ["kind", "item", "from", "to", "value"],
        [
            [r.kind.value, r.name, r.valid_from, r.valid_to or "current", _compact(r.value)]
            for r in rows
        ],
        [dataclasses.asdict(r) for r in rows],
    )
    return 0


def _compact(value: dict[str, Any] | None) -> str:
    """A stored item as `k=v` pairs without the empty ones: what a table row can show."""
    if not value:
        return ""
    return " ".join(
        f"{k}={json.dumps(v) if isinstance(v, dict | list) else v}"
        for k, v in value.items()
        if v not in ("", None, [], {})
    )


def events(config: Config, args: argparse.Namespace) -> int:
    with _store(config) as store:
        try:
            rows = store.events(
                domain=args.domain, type=args.type, since=args.since, limit=args.limit
            )
        except DomainNotFound as exc:
            return _not_found(exc)
    _output(
        args,
        ["time", "domain", "event", "subject", "old", "new"],
        [[e.at, e.domain, e.type, e.subject, e.old, e.new] for e in rows],
        [dataclasses.asdict(r) for r in rows],
    )
    return 0


def diff(config: Config, args: argparse.Namespace) -> int:
    with _store(config) as store:
        try:
            changes = timetravel.diff(store, args.domain, args.since, args.until, kind=args.kind)
        except DomainNotFound as exc:
            return _not_found(exc)
        except ValueError as exc:
            print(f"guestwatch: {exc}", file=sys.stderr)
            return 2
    _output(
        args,
        ["kind", "item", "change", "old", "new"],
        [[c.kind.value, c.name, c.change, _compact(c.old), _compact(c.new)] for c in changes],
        [dataclasses.asdict(c) for c in changes],
    )
    return 0


def packages(config: Config, args: argparse.Namespace) -> int:
    with _store(config) as store:
        hits = timetravel.packages(
            store, args.name, version=args.version, older_than=args.older_than, at=args.at
        )
    _output(
        args,
        ["domain", "package", "version", "arch", "manager", "since"],
        [[h.domain, h.name, h.version, h.arch, h.manager, h.since] for h in hits],
        [dataclasses.asdict(h) for h in hits],
    )
    return 0


def prune(config: Config, args: argparse.Namespace) -> int:
    """`guestwatch db prune`: the daily retention job, now."""
    with _store(config) as store:
        stats = retention.prune(store.engine, config.retention)
    print(
        f"folded {stats.samples_folded} samples into hourly roll-ups and "
        f"{stats.hourly_folded} hourly roll-ups into daily ones; deleted "
        f"{stats.daily_deleted} daily roll-ups, {stats.closed_rows_deleted} closed inventory "
        f"rows and {stats.events_deleted} events ({stats.seconds:.1f}s)"
    )
    return 0
