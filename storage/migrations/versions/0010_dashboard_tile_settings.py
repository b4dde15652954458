"""Dashboard tiles: their own color, layouts and filters.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 00:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("dashboard_tiles") as batch:
        batch.add_column(sa.Column("color", sa.String(length=400), nullable=True))
        batch.add_column(sa.Column("layouts", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("filters", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("dashboard_tiles") as batch:
        batch.drop_column("filters")
        batch.drop_column("layouts")
        batch.drop_column("color")
