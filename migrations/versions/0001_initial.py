"""Initial schema: vms, inventory validity rows and sets, events, samples, kind status.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-26

Written out with plain SQLAlchemy types (not `storage.models`) so that this revision keeps
creating the same schema whatever the models become later.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001_initial"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _big_id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _vm_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["vm_id"], ["vms.id"], name=op.f(f"fk_{table}_vm_id_vms"), ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "vms",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("uuid", sa.String(length=64), nullable=True),
        sa.Column("hypervisor", sa.String(length=255), nullable=False),
        sa.Column("protocol", sa.String(length=32), nullable=False),
        sa.Column("first_seen", _utc(), nullable=False),
        sa.Column("last_heartbeat", _utc(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("state_since", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vms")),
        sa.UniqueConstraint("key", name=op.f("uq_vms_key")),
    )
    op.create_index("ix_vms_name", "vms", ["name"])

    op.create_table(
        "inventory_items",
        sa.Column("id", _big_id(), nullable=False),
        sa.Column("vm_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("identity", sa.Text(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("valid_from", _utc(), nullable=False),
        sa.Column("valid_to", _utc(), nullable=True),
        _vm_fk("inventory_items"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inventory_items")),
    )
    op.create_index(
        "ix_inventory_items_vm_kind_valid_to", "inventory_items", ["vm_id", "kind", "valid_to"]
    )
    op.create_index(
        "ix_inventory_items_kind_name_valid_to", "inventory_items", ["kind", "name", "valid_to"]
    )
    op.create_index("ix_inventory_items_vm_valid_from", "inventory_items", ["vm_id", "valid_from"])

    op.create_table(
        "inventory_sets",
        sa.Column("vm_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("digest", sa.LargeBinary(length=16), nullable=False),
        sa.Column("item_count", sa.Integer(), nullable=False),
        sa.Column("first_seen", _utc(), nullable=False),
        sa.Column("changed_at", _utc(), nullable=False),
        _vm_fk("inventory_sets"),
        sa.PrimaryKeyConstraint("vm_id", "kind", name=op.f("pk_inventory_sets")),
    )

    op.create_table(
        "events",
        sa.Column("id", _big_id(), nullable=False),
        sa.Column("vm_id", sa.Integer(), nullable=False),
        sa.Column("at", _utc(), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=True),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("old", sa.Text(), nullable=True),
        sa.Column("new", sa.Text(), nullable=True),
        _vm_fk("events"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    op.create_index("ix_events_vm_at", "events", ["vm_id", "at"])
    op.create_index("ix_events_type_at", "events", ["type", "at"])
    op.create_index("ix_events_at", "events", ["at"])

    op.create_table(
        "samples",
        sa.Column("id", _big_id(), nullable=False),
        sa.Column("vm_id", sa.Integer(), nullable=False),
        sa.Column("at", _utc(), nullable=False),
        sa.Column("metric", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=255), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        _vm_fk("samples"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_samples")),
    )
    op.create_index("ix_samples_vm_metric_at", "samples", ["vm_id", "metric", "at"])
    op.create_index("ix_samples_at", "samples", ["at"])

    op.create_table(
        "kind_status",
        sa.Column("vm_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=255), nullable=False),
        sa.Column("since", _utc(), nullable=False),
        sa.Column("last_success", _utc(), nullable=True),
        _vm_fk("kind_status"),
        sa.PrimaryKeyConstraint("vm_id", "kind", name=op.f("pk_kind_status")),
    )


def downgrade() -> None:
    op.drop_table("kind_status")
    op.drop_index("ix_samples_at", table_name="samples")
    op.drop_index("ix_samples_vm_metric_at", table_name="samples")
    op.drop_table("samples")
    op.drop_index("ix_events_at", table_name="events")
    op.drop_index("ix_events_type_at", table_name="events")
    op.drop_index("ix_events_vm_at", table_name="events")
    op.drop_table("events")
    op.drop_table("inventory_sets")
    op.drop_index("ix_inventory_items_vm_valid_from", table_name="inventory_items")
    op.drop_index("ix_inventory_items_kind_name_valid_to", table_name="inventory_items")
    op.drop_index("ix_inventory_items_vm_kind_valid_to", table_name="inventory_items")
    op.drop_table("inventory_items")
    op.drop_index("ix_vms_name", table_name="vms")
    op.drop_table("vms")
