"""What the store's queries return, and the errors they raise.

Small frozen dataclasses rather than ORM objects: the CLI and the HTTP API render them after the
session is gone, and their shape is the store's public contract.

Exceptions::

    StoreError
    └── DomainNotFound        no VM with that key, UUID or name
        └── AmbiguousDomain   a name shared by several VMs: ask by key or UUID
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from collector.facts import FactKind


class StoreError(Exception):
    """Base of the store's own errors (database errors surface as SQLAlchemy's)."""


class DomainNotFound(StoreError, LookupError):
    """No VM matches the key, UUID or name asked for."""

    def __init__(self, domain: str) -> None:
        super().__init__(f"no such domain: {domain!r}")
        self.domain = domain


class AmbiguousDomain(DomainNotFound):
    """Several VMs (on different hypervisors) share the name asked for."""

    def __init__(self, domain: str, keys: list[str]) -> None:
        StoreError.__init__(self, f"domain {domain!r} is ambiguous, use one of the keys: {keys}")
        self.domain = domain
        self.keys = keys


@dataclass(frozen=True, slots=True)
class WriteStats:
    """What one `Store.write` call did (for logs and the writer's metrics)."""

    records: int = 0
    vms: int = 0
    items_opened: int = 0
    items_closed: int = 0
    events: int = 0
    samples: int = 0
    #: Sets diffed by their changed ranges only (`collector.ranges`), not in full.
    sets_ranged: int = 0
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class KindState:
    """Whether a kind can be collected from a VM (ok, unavailable, error) and since when."""

    status: str
    reason: str
    since: datetime
    last_success: datetime | None


@dataclass(frozen=True, slots=True)
class VmInfo:
    key: str
    name: str
    uuid: str | None
    hypervisor: str
    protocol: str
    state: str
    state_since: datetime
    first_seen: datetime
    last_heartbeat: datetime | None
    os_pretty_name: str | None = None
    hostname: str | None = None
    kinds: Mapping[FactKind, KindState] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Inventory:
    """A VM's inventory, current (`at` None) or as it was at `at`.

    `facts` maps each kind to its items as `Fact.to_dict()` without the measurement fields,
    ordered by identity; `status` is the current per-kind status (not kept historically).
    """

    vm: VmInfo
    at: datetime | None
    facts: dict[FactKind, list[dict[str, Any]]]

    @property
    def status(self) -> Mapping[FactKind, KindState]:
        return self.vm.kinds


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One validity row: the item existed with this value from `valid_from` to `valid_to`."""

    kind: FactKind
    name: str
    identity: str
    value: dict[str, Any]
    valid_from: datetime
    valid_to: datetime | None


@dataclass(frozen=True, slots=True)
class EventView:
    id: int
    at: datetime
    domain: str
    vm_key: str
    type: str
    kind: str | None
    subject: str
    old: str | None
    new: str | None


@dataclass(frozen=True, slots=True)
class PackageHit:
    """A VM that currently has the package asked for."""

    domain: str
    vm_key: str
    name: str
    version: str
    arch: str
    manager: str
    since: datetime


@dataclass(frozen=True, slots=True)
class SamplePoint:
    at: datetime
    label: str
    value: float
