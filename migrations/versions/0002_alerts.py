"""Alerts outbox: guestwatch's own alerts and their delivery state per receiver.

Revision ID: 0002_alerts
Revises: 0001_initial
Create Date: 2026-11-26

Plain SQLAlchemy types, like 0001, so that this revision keeps creating the same schema.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_alerts"
down_revision: str | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _big_id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", _big_id(), nullable=False),
        sa.Column("key", sa.String(length=36), nullable=False),
        sa.Column("vm_id", sa.Integer(), nullable=False),
        sa.Column("alertname", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=255), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("labels", sa.Text(), nullable=False),
        sa.Column("annotations", sa.Text(), nullable=False),
        sa.Column("starts_at", _utc(), nullable=False),
        sa.Column("fire_at", _utc(), nullable=False),
        sa.Column("ends_at", _utc(), nullable=True),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.ForeignKeyConstraint(
            ["vm_id"], ["vms.id"], name=op.f("fk_alerts_vm_id_vms"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
        sa.UniqueConstraint("key", name=op.f("uq_alerts_key")),
    )
    op.create_index("ix_alerts_vm_id_state", "alerts", ["vm_id", "state"])
    op.create_index("ix_alerts_source_state", "alerts", ["source", "state"])
    op.create_index("ix_alerts_updated_at", "alerts", ["updated_at"])

    op.create_table(
        "alert_deliveries",
        sa.Column("alert_id", _big_id(), nullable=False),
        sa.Column("receiver", sa.String(length=255), nullable=False),
        sa.Column("delivered", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt", _utc(), nullable=True),
        sa.Column("last_sent", _utc(), nullable=True),
        sa.Column("last_error", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(
            ["alert_id"],
            ["alerts.id"],
            name=op.f("fk_alert_deliveries_alert_id_alerts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("alert_id", "receiver", name=op.f("pk_alert_deliveries")),
    )


def downgrade() -> None:
    op.drop_table("alert_deliveries")
    op.drop_index("ix_alerts_updated_at", table_name="alerts")
    op.drop_index("ix_alerts_source_state", table_name="alerts")
    op.drop_index("ix_alerts_vm_id_state", table_name="alerts")
    op.drop_table("alerts")
