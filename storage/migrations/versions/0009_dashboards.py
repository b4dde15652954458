"""Dashboards: description, pinned, stored filters, tags, update time, and the layout order of tiles.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 00:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("dashboards") as batch:
        batch.add_column(sa.Column("description", sa.String(length=1000), nullable=False, server_default=""))
        batch.add_column(sa.Column("pinned", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("filters", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("dashboard_tiles") as batch:
        batch.add_column(sa.Column("position", sa.Integer(), nullable=False, server_default="0"))
    op.create_table(
        "dashboard_tags",
        sa.Column("id", _ID, nullable=False),
        sa.Column("tag_id", _ID, nullable=False),
        sa.Column("dashboard_id", _ID, nullable=False),
        sa.ForeignKeyConstraint(["dashboard_id"], ["dashboards.id"]),
        sa.ForeignKeyConstraint(["tag_id"], ["tags.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tag_id", "dashboard_id"),
    )
    with op.batch_alter_table("dashboard_tags") as batch:
        batch.create_index(batch.f("ix_dashboard_tags_dashboard_id"), ["dashboard_id"], unique=False)
        batch.create_index(batch.f("ix_dashboard_tags_tag_id"), ["tag_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("dashboard_tags") as batch:
        batch.drop_index(batch.f("ix_dashboard_tags_tag_id"))
        batch.drop_index(batch.f("ix_dashboard_tags_dashboard_id"))
    op.drop_table("dashboard_tags")
    with op.batch_alter_table("dashboard_tiles") as batch:
        batch.drop_column("position")
    with op.batch_alter_table("dashboards") as batch:
        batch.drop_column("updated_at")
        batch.drop_column("filters")
        batch.drop_column("pinned")
        batch.drop_column("description")
