"""Pure rules that turn the opening and closing of validity rows into change events.

Kept apart from the database code so that the event vocabulary is in one place (and listed in
`storage/README.md`) and can be tested without a database.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from collector.facts import FactKind

#: Bound on the `old`/`new` text of an event: it is a summary, the full value is in the row.
EVENT_TEXT_MAX: Final = 1024
SUBJECT_MAX: Final = 255


class EventType(StrEnum):
    """The `events.type` vocabulary."""

    INVENTORY_FIRST_SEEN = "inventory_first_seen"
    PACKAGE_ADDED = "package_added"
    PACKAGE_REMOVED = "package_removed"
    PACKAGE_UPGRADED = "package_upgraded"
    INTERFACE_ADDED = "interface_added"
    INTERFACE_REMOVED = "interface_removed"
    ADDRESS_ADDED = "address_added"
    ADDRESS_REMOVED = "address_removed"
    USER_LOGIN = "user_login"
    USER_LOGOUT = "user_logout"
    FILESYSTEM_ADDED = "filesystem_added"
    FILESYSTEM_REMOVED = "filesystem_removed"
    FILESYSTEM_CHANGED = "filesystem_changed"
    DISK_ADDED = "disk_added"
    DISK_REMOVED = "disk_removed"
    OS_CHANGED = "os_changed"
    KERNEL_CHANGED = "kernel_changed"
    HOSTNAME_CHANGED = "hostname_changed"
    TIMEZONE_CHANGED = "timezone_changed"
    CPUS_CHANGED = "cpus_changed"
    MEMORY_CHANGED = "memory_changed"
    AGENT_CHANGED = "agent_changed"
    ITEM_ADDED = "item_added"
    ITEM_REMOVED = "item_removed"
    ITEM_CHANGED = "item_changed"
    LIVENESS_CHANGED = "liveness_changed"
    MIGRATED = "migrated"
    SPICE_SESSION_STARTED = "spice_session_started"
    SPICE_SESSION_ENDED = "spice_session_ended"


#: Kinds with one item per VM: any change of it is one `<kind>_changed` event.
SCALAR_EVENTS: Final[dict[str, EventType]] = {
    FactKind.OS: EventType.OS_CHANGED,
    FactKind.HOSTNAME: EventType.HOSTNAME_CHANGED,
    FactKind.TIMEZONE: EventType.TIMEZONE_CHANGED,
    FactKind.CPUS: EventType.CPUS_CHANGED,
    FactKind.MEMORY: EventType.MEMORY_CHANGED,
    FactKind.AGENT: EventType.AGENT_CHANGED,
}

#: Per-kind (added, removed, changed) for item kinds; others use item_added/removed/changed.
ITEM_EVENTS: Final[dict[str, tuple[EventType, EventType, EventType]]] = {
    FactKind.PACKAGES: (
        EventType.PACKAGE_ADDED,
        EventType.PACKAGE_REMOVED,
        EventType.PACKAGE_UPGRADED,
    ),
    FactKind.NETWORK: (
        EventType.INTERFACE_ADDED,
        EventType.INTERFACE_REMOVED,
        EventType.ITEM_CHANGED,
    ),
    FactKind.USERS: (EventType.USER_LOGIN, EventType.USER_LOGOUT, EventType.ITEM_CHANGED),
    FactKind.FILESYSTEMS: (
        EventType.FILESYSTEM_ADDED,
        EventType.FILESYSTEM_REMOVED,
        EventType.FILESYSTEM_CHANGED,
    ),
    FactKind.DISKS: (EventType.DISK_ADDED, EventType.DISK_REMOVED, EventType.ITEM_CHANGED),
    FactKind.SPICE: (
        EventType.SPICE_SESSION_STARTED,
        EventType.SPICE_SESSION_ENDED,
        EventType.ITEM_CHANGED,
    ),
}
_GENERIC = (EventType.ITEM_ADDED, EventType.ITEM_REMOVED, EventType.ITEM_CHANGED)
_KERNEL_FIELDS: Final = frozenset({"kernel_release", "kernel_version"})


@dataclass(frozen=True, slots=True)
class Change:
    """One event before it is tied to a VM and a time."""

    type: EventType
    subject: str
    old: str | None = None
    new: str | None = None


def bounded(text: str | None, limit: int = EVENT_TEXT_MAX) -> str | None:
    return None if text is None else text[:limit]


def _load(value: str | None) -> dict[str, Any]:
    if value is None:
        return {}
    try:
        data = json.loads(value)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _scalar_summary(kind: str, data: dict[str, Any]) -> str:
    if kind == FactKind.OS:
        return _text(
            data.get("pretty_name")
            or " ".join(p for p in (_text(data.get("name")), _text(data.get("version"))) if p)
            or data.get("id")
        )
    if kind == FactKind.HOSTNAME:
        return _text(data.get("name") or data.get("fqdn"))
    if kind == FactKind.TIMEZONE:
        return _text(data.get("zone") or data.get("offset_seconds"))
    if kind == FactKind.CPUS:
        return f"{_text(data.get('online'))}/{_text(data.get('total'))}"
    if kind == FactKind.MEMORY:
        return _text(data.get("total_bytes"))
    if kind == FactKind.AGENT:
        return f"{_text(data.get('protocol'))} {_text(data.get('version'))}".strip()
    return ""


def _summaries(
    old: str | None, new: str | None, old_summary: str | None, new_summary: str | None
) -> tuple[str | None, str | None]:
    """The short summaries, or the full values when the summaries would hide the change."""
    if old is not None and new is not None and old_summary == new_summary:
        return bounded(old), bounded(new)
    return bounded(old_summary), bounded(new_summary)


def _addresses(data: dict[str, Any]) -> set[str]:
    found: set[str] = set()
    raw = data.get("addresses")
    if isinstance(raw, list):
        for entry in raw:
            if isinstance(entry, dict):
                found.add(f"{_text(entry.get('address'))}/{_text(entry.get('prefix'))}")
    return found


def changes(kind: str, label: str, old: str | None, new: str | None) -> list[Change]:
    """Events for one identity whose row was opened (`old` None), closed (`new` None) or both.

    `old` and `new` are `Fact.value()` JSON; `label` is `Fact.label()`.
    """
    subject = label[:SUBJECT_MAX]
    scalar = SCALAR_EVENTS.get(kind)
    if scalar is not None:
        old_data, new_data = _load(old), _load(new)
        event = scalar
        if kind == FactKind.OS and old is not None and new is not None:
            differing = {
                k for k in old_data.keys() | new_data.keys() if old_data.get(k) != new_data.get(k)
            }
            if differing and differing <= _KERNEL_FIELDS:
                return [
                    Change(
                        EventType.KERNEL_CHANGED,
                        subject or kind,
                        *_summaries(
                            old,
                            new,
                            _text(old_data.get("kernel_release")),
                            _text(new_data.get("kernel_release")),
                        ),
                    )
                ]
        return [
            Change(
                event,
                subject or kind,
                *_summaries(
                    old,
                    new,
                    None if old is None else _scalar_summary(kind, old_data),
                    None if new is None else _scalar_summary(kind, new_data),
                ),
            )
        ]

    added, removed, changed = ITEM_EVENTS.get(kind, _GENERIC)

    if kind == FactKind.PACKAGES:
        old_version = None if old is None else _text(_load(old).get("version"))
        new_version = None if new is None else _text(_load(new).get("version"))
        if old is None:
            return [Change(added, subject, None, bounded(new_version))]
        if new is None:
            return [Change(removed, subject, bounded(old_version), None)]
        if old_version != new_version:
            return [Change(changed, subject, bounded(old_version), bounded(new_version))]
        return [Change(EventType.ITEM_CHANGED, subject, bounded(old), bounded(new))]

    if kind == FactKind.NETWORK:
        old_data, new_data = _load(old), _load(new)
        old_addrs, new_addrs = _addresses(old_data), _addresses(new_data)
        out: list[Change] = []
        if old is None:
            out.append(Change(added, subject, None, bounded(_text(new_data.get("mac")))))
        elif new is None:
            out.append(Change(removed, subject, bounded(_text(old_data.get("mac"))), None))
        else:
            old_rest = {k: v for k, v in old_data.items() if k != "addresses"}
            new_rest = {k: v for k, v in new_data.items() if k != "addresses"}
            if old_rest != new_rest:
                out.append(Change(changed, subject, bounded(old), bounded(new)))
        out.extend(
            Change(EventType.ADDRESS_REMOVED, subject, bounded(a), None)
            for a in sorted(old_addrs - new_addrs)
        )
        out.extend(
            Change(EventType.ADDRESS_ADDED, subject, None, bounded(a))
            for a in sorted(new_addrs - old_addrs)
        )
        return out

    if old is None:
        return [Change(added, subject, None, bounded(new))]
    if new is None:
        return [Change(removed, subject, bounded(old), None)]
    return [Change(changed, subject, bounded(old), bounded(new))]
