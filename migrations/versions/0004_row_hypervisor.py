"""Every inventory row, event and sample carries the hypervisor it was observed on.

Revision ID: 0004_row_hypervisor
Revises: 0003_rollups
Create Date: 2026-11-27

Existing rows are stamped with their VM's current hypervisor, the best that is known.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_row_hypervisor"
down_revision: str | None = "0003_rollups"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("inventory_items", "events", "samples")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(
                sa.Column("hypervisor", sa.String(length=255), server_default="", nullable=False)
            )
        op.execute(
            f"UPDATE {table} SET hypervisor = "  # noqa: S608 - table names are constants
            f"(SELECT vms.hypervisor FROM vms WHERE vms.id = {table}.vm_id)"
        )


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("hypervisor")
