"""Sample roll-ups: hourly and daily min / avg / max kept after raw samples expire.

Revision ID: 0003_rollups
Revises: 0002_alerts
Create Date: 2026-11-26

Plain SQLAlchemy types, like 0001, so that this revision keeps creating the same schema.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_rollups"
down_revision: str | None = "0002_alerts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sample_rollups",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("vm_id", sa.Integer(), nullable=False),
        sa.Column("resolution", sa.String(length=8), nullable=False),
        sa.Column("bucket", sa.DateTime(timezone=True), nullable=False),
        sa.Column("metric", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=255), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("min", sa.Float(), nullable=False),
        sa.Column("avg", sa.Float(), nullable=False),
        sa.Column("max", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["vm_id"], ["vms.id"], name=op.f("fk_sample_rollups_vm_id_vms"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sample_rollups")),
        sa.UniqueConstraint(
            "vm_id",
            "metric",
            "label",
            "resolution",
            "bucket",
            name=op.f("uq_sample_rollups_vm_id_metric_label_resolution_bucket"),
        ),
    )
    op.create_index(
        "ix_sample_rollups_resolution_bucket", "sample_rollups", ["resolution", "bucket"]
    )


def downgrade() -> None:
    op.drop_index("ix_sample_rollups_resolution_bucket", table_name="sample_rollups")
    op.drop_table("sample_rollups")
