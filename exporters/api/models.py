"""Response models of /api/v1: the contract `/openapi.json` documents.

Every list is a page: `items`, the `limit` and `offset` asked for, and `next_offset` (null on
the last page), so that a client walks any list the same way.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Page(BaseModel):
    limit: int = Field(description="most items per page, as asked")
    offset: int = Field(description="items skipped, as asked")
    next_offset: int | None = Field(description="offset of the next page; null on the last")


class FactAvailability(BaseModel):
    status: str = Field(description="ok, unavailable, error or pending")
    reason: str
    last_success: datetime | None


class DomainSummary(BaseModel):
    domain: str
    uuid: str | None
    hypervisor: str
    protocol: str
    state: str = Field(description="liveness: unknown, up, late, down or gone")
    state_since: datetime | None
    last_heartbeat: datetime | None
    os: str | None = Field(description="the OS's pretty name")
    hostname: str | None
    facts: dict[str, FactAvailability] = Field(description="per fact kind: can it be collected")


class DomainPage(Page):
    total: int = Field(description="domains matching the filters")
    items: list[DomainSummary]


class FactStatus(BaseModel):
    status: str
    reason: str
    since: datetime
    last_success: datetime | None


class DomainInventory(BaseModel):
    domain: str
    key: str = Field(description="the VM's identity in the store (UUID when known)")
    uuid: str | None
    hypervisor: str
    protocol: str
    state: str
    state_since: datetime
    last_heartbeat: datetime | None
    at: datetime | None = Field(description="the time asked for; null for the current inventory")
    inventory: dict[str, list[dict[str, Any]]] = Field(
        description="per fact kind, its items as they were (at `at`)"
    )
    facts: dict[str, FactStatus] = Field(description="current per-kind status")


class HistoryItem(BaseModel):
    kind: str
    name: str
    identity: str
    value: dict[str, Any]
    valid_from: datetime
    valid_to: datetime | None = Field(description="null while the item is current")


class HistoryPage(Page):
    domain: str
    items: list[HistoryItem]


class DiffItem(BaseModel):
    kind: str
    name: str
    identity: str
    change: Literal["added", "removed", "changed"]
    old: dict[str, Any] | None
    new: dict[str, Any] | None


class DiffPage(Page):
    model_config = ConfigDict(populate_by_name=True)

    domain: str
    from_: datetime = Field(alias="from")
    to: datetime
    items: list[DiffItem]


class EventItem(BaseModel):
    id: int
    at: datetime
    domain: str
    vm_key: str
    type: str
    kind: str | None
    subject: str
    old: str | None
    new: str | None


class EventPage(Page):
    items: list[EventItem]


class PackageItem(BaseModel):
    domain: str
    vm_key: str
    name: str
    version: str
    arch: str
    manager: str = Field(description="dpkg or rpm: whose version order applies")
    since: datetime = Field(description="when this version was first seen on the VM")


class PackagePage(Page):
    name: str
    at: datetime | None
    items: list[PackageItem]


class SampleItem(BaseModel):
    at: datetime = Field(description="start of the bucket (the sample's time when raw)")
    label: str = Field(description="mountpoint, interface, or empty for per-VM values")
    count: int = Field(description="raw samples folded into this point")
    min: float
    avg: float
    max: float


class SamplePage(Page):
    domain: str
    metric: str
    since: datetime
    until: datetime
    step: float | None = Field(description="bucket width in seconds; null for stored points")
    items: list[SampleItem]


class AlertItem(BaseModel):
    id: int
    key: str
    alertname: str
    state: str
    domain: str
    vm_key: str
    severity: str
    starts_at: datetime
    fire_at: datetime
    ends_at: datetime | None
    labels: dict[str, str]
    annotations: dict[str, str]
    deliveries: list[dict[str, Any]]


class AlertPage(Page):
    items: list[AlertItem]
