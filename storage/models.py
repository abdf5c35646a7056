"""SQLAlchemy models: the schema of the history store.

Inventory is kept as item-level validity rows (`inventory_items`): a row lives from the poll that
first saw an item (`valid_from`) to the poll that no longer saw it (`valid_to`, NULL while
current), so "the inventory at time T" is one range predicate and a poll that changes nothing
writes nothing. Change events are derived from opening and closing rows. See `storage/README.md`.

Portable on purpose: the same models run on SQLite (embedded default) and PostgreSQL (the shared
database of many hosts); nothing here is dialect-specific except type variants.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

#: Deterministic constraint names: Alembic needs them to drop or alter constraints later, and
#: SQLite batch migrations cannot address unnamed ones.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Column sizes. Guest text is hostile; the repository truncates to these before writing, since
# PostgreSQL rejects an over-long VARCHAR where SQLite silently stores it.
KEY_LEN = 255
NAME_LEN = 255
KIND_LEN = 32
TYPE_LEN = 32
STATE_LEN = 16
METRIC_LEN = 64
SUBJECT_LEN = 255
REASON_LEN = 255
UUID_LEN = 64
PROTOCOL_LEN = 32
RESOLUTION_LEN = 8
ALERT_KEY_LEN = 36
ALERTNAME_LEN = 64

#: 64-bit ids on PostgreSQL (15 million current rows and growing); SQLite only auto-increments
#: an `INTEGER PRIMARY KEY` (which is 64-bit there anyway).
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend.

    PostgreSQL stores `timestamptz`; SQLite keeps no zone, so the value is written as naive UTC
    and read back as aware UTC. Naive datetimes handed in are taken to be UTC. Every stored
    value has the same text form on SQLite, so string comparison there orders correctly.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Vm(Base):
    """One VM, keyed by UUID when known so that its history follows it across hosts."""

    __tablename__ = "vms"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(KEY_LEN), unique=True)
    name: Mapped[str] = mapped_column(String(NAME_LEN))
    uuid: Mapped[str | None] = mapped_column(String(UUID_LEN))
    hypervisor: Mapped[str] = mapped_column(String(NAME_LEN))
    protocol: Mapped[str] = mapped_column(String(PROTOCOL_LEN))
    first_seen: Mapped[datetime] = mapped_column(UtcDateTime())
    last_heartbeat: Mapped[datetime | None] = mapped_column(UtcDateTime())
    #: Liveness: unknown, up, late, down, gone.
    state: Mapped[str] = mapped_column(String(STATE_LEN))
    state_since: Mapped[datetime] = mapped_column(UtcDateTime())

    __table_args__ = (Index("ix_vms_name", "name"),)


class InventoryItem(Base):
    """One item (package, interface, the OS...) as it was from `valid_from` to `valid_to`.

    `identity` and `value` are `Fact.identity()` and `Fact.value()` (canonical JSON); a changed
    value for the same identity closes the row and opens a new one.
    """

    __tablename__ = "inventory_items"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    vm_id: Mapped[int] = mapped_column(ForeignKey("vms.id", ondelete="CASCADE"))
    #: The hypervisor this row was observed on (many hosts write one database).
    hypervisor: Mapped[str] = mapped_column(String(NAME_LEN), server_default="")
    kind: Mapped[str] = mapped_column(String(KIND_LEN))
    #: `Fact.label()`: package name, mountpoint, user name; indexed for fleet-wide search.
    name: Mapped[str] = mapped_column(String(NAME_LEN))
    identity: Mapped[str] = mapped_column(Text)
    value: Mapped[str] = mapped_column(Text)
    valid_from: Mapped[datetime] = mapped_column(UtcDateTime())
    valid_to: Mapped[datetime | None] = mapped_column(UtcDateTime())

    __table_args__ = (
        # The VM's current rows of a kind (valid_to IS NULL): the diff and the current view.
        Index("ix_inventory_items_vm_kind_valid_to", "vm_id", "kind", "valid_to"),
        # "Which VMs have openssl": current rows of a kind by name.
        Index("ix_inventory_items_kind_name_valid_to", "kind", "name", "valid_to"),
        # `inventory(at=...)` and `history(since=...)`: rows of a VM by opening time.
        Index("ix_inventory_items_vm_valid_from", "vm_id", "valid_from"),
    )


class InventorySet(Base):
    """Per VM and kind: when the kind was first recorded and the digest of its current rows.

    The digest equals `FactSet.digest()` of the current rows, so the collector warm-starts
    after a restart without reading 15 million rows; the row's existence tells a first
    observation (no per-item events) from a later one, even when the first set was empty.
    """

    __tablename__ = "inventory_sets"

    vm_id: Mapped[int] = mapped_column(ForeignKey("vms.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(KIND_LEN), primary_key=True)
    digest: Mapped[bytes] = mapped_column(LargeBinary(16))
    item_count: Mapped[int] = mapped_column(Integer)
    first_seen: Mapped[datetime] = mapped_column(UtcDateTime())
    changed_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Event(Base):
    """A change derived from opening/closing validity rows, or a liveness transition."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    vm_id: Mapped[int] = mapped_column(ForeignKey("vms.id", ondelete="CASCADE"))
    #: The hypervisor this row was observed on (many hosts write one database).
    hypervisor: Mapped[str] = mapped_column(String(NAME_LEN), server_default="")
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    type: Mapped[str] = mapped_column(String(TYPE_LEN))
    #: The fact kind; NULL for liveness events.
    kind: Mapped[str | None] = mapped_column(String(KIND_LEN))
    subject: Mapped[str] = mapped_column(String(SUBJECT_LEN))
    old: Mapped[str | None] = mapped_column(Text)
    new: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("ix_events_vm_at", "vm_id", "at"),
        Index("ix_events_type_at", "type", "at"),
        Index("ix_events_at", "at"),
    )


class SampleRow(Base):
    """A measurement that changes every poll (memory available, filesystem used bytes)."""

    __tablename__ = "samples"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    vm_id: Mapped[int] = mapped_column(ForeignKey("vms.id", ondelete="CASCADE"))
    #: The hypervisor this row was observed on (many hosts write one database).
    hypervisor: Mapped[str] = mapped_column(String(NAME_LEN), server_default="")
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    metric: Mapped[str] = mapped_column(String(METRIC_LEN))
    label: Mapped[str] = mapped_column(String(NAME_LEN))
    value: Mapped[float] = mapped_column(Float)

    __table_args__ = (
        Index("ix_samples_vm_metric_at", "vm_id", "metric", "at"),
        # Retention deletes by age across the fleet.
        Index("ix_samples_at", "at"),
    )


class KindStatusRow(Base):
    """Whether a kind can be collected from a VM, since when, and its last good poll."""

    __tablename__ = "kind_status"

    vm_id: Mapped[int] = mapped_column(ForeignKey("vms.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(KIND_LEN), primary_key=True)
    #: ok, unavailable or error.
    status: Mapped[str] = mapped_column(String(STATE_LEN))
    reason: Mapped[str] = mapped_column(String(REASON_LEN))
    since: Mapped[datetime] = mapped_column(UtcDateTime())
    last_success: Mapped[datetime | None] = mapped_column(UtcDateTime())


class AlertRow(Base):
    """One alert guestwatch raises itself: from a liveness transition to its resolution.

    Written in the same transaction as the transition (the durable outbox); `labels` and
    `annotations` are frozen JSON so that every (re-)send carries the same labels and
    `starts_at`, which is what lets Alertmanager deduplicate an at-least-once delivery.
    """

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    #: Stable idempotency key (webhook receivers deduplicate on it).
    key: Mapped[str] = mapped_column(String(ALERT_KEY_LEN), unique=True)
    vm_id: Mapped[int] = mapped_column(ForeignKey("vms.id", ondelete="CASCADE"))
    alertname: Mapped[str] = mapped_column(String(ALERTNAME_LEN))
    #: The hypervisor (guestwatch instance) that raised it and delivers it: hosts sharing one
    #: PostgreSQL database each deliver only their own alerts.
    source: Mapped[str] = mapped_column(String(NAME_LEN))
    #: pending (in hold-down), firing, resolved, cancelled (ended within hold-down).
    state: Mapped[str] = mapped_column(String(STATE_LEN))
    labels: Mapped[str] = mapped_column(Text)
    annotations: Mapped[str] = mapped_column(Text)
    starts_at: Mapped[datetime] = mapped_column(UtcDateTime())
    #: starts_at + hold-down: when a still-open alert starts firing.
    fire_at: Mapped[datetime] = mapped_column(UtcDateTime())
    ends_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())

    __table_args__ = (
        Index("ix_alerts_vm_id_state", "vm_id", "state"),
        Index("ix_alerts_source_state", "source", "state"),
        Index("ix_alerts_updated_at", "updated_at"),
    )


class AlertDelivery(Base):
    """What one receiver (an Alertmanager, the webhook) has acknowledged of one alert."""

    __tablename__ = "alert_deliveries"

    alert_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("alerts.id", ondelete="CASCADE"), primary_key=True
    )
    receiver: Mapped[str] = mapped_column(String(NAME_LEN), primary_key=True)
    #: The last phase the receiver acknowledged: "" (nothing yet), firing, resolved.
    delivered: Mapped[str] = mapped_column(String(STATE_LEN))
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt: Mapped[datetime | None] = mapped_column(UtcDateTime())
    last_sent: Mapped[datetime | None] = mapped_column(UtcDateTime())
    last_error: Mapped[str] = mapped_column(String(REASON_LEN))


class SampleRollup(Base):
    """Min / avg / max of a sample series over one hour or one day (retention roll-ups).

    Raw samples older than the raw retention are folded into hourly rows, hourly rows older
    than theirs into daily rows (`storage/retention.py`); `count` weights the average when
    buckets merge, so a late fold into an existing bucket stays exact.
    """

    __tablename__ = "sample_rollups"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    vm_id: Mapped[int] = mapped_column(ForeignKey("vms.id", ondelete="CASCADE"))
    #: "hour" or "day".
    resolution: Mapped[str] = mapped_column(String(RESOLUTION_LEN))
    #: Start of the bucket (UTC).
    bucket: Mapped[datetime] = mapped_column(UtcDateTime())
    metric: Mapped[str] = mapped_column(String(METRIC_LEN))
    label: Mapped[str] = mapped_column(String(NAME_LEN))
    count: Mapped[int] = mapped_column(Integer)
    min: Mapped[float] = mapped_column(Float)
    avg: Mapped[float] = mapped_column(Float)
    max: Mapped[float] = mapped_column(Float)

    __table_args__ = (
        UniqueConstraint("vm_id", "metric", "label", "resolution", "bucket"),
        # Retention folds and deletes by age across the fleet.
        Index("ix_sample_rollups_resolution_bucket", "resolution", "bucket"),
    )
