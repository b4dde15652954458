"""Actions: saved definitions of which events count as one user action, and their tags.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-10 00:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "actions",
        sa.Column("id", _ID, nullable=False),
        sa.Column("environment_id", _ID, nullable=False),
        sa.Column("name", sa.String(length=400), nullable=False),
        sa.Column("description", sa.String(length=1000), nullable=False),
        sa.Column("steps", sa.JSON(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by_id", _ID, nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["environment_id"], ["environments.id"]),
        sa.ForeignKeyConstraint(["created_by_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_actions_env_deleted", "actions", ["environment_id", "deleted"])
    op.create_index(
        "uq_actions_env_live_name",
        "actions",
        ["environment_id", "name"],
        unique=True,
        sqlite_where=sa.text("NOT deleted"),
        postgresql_where=sa.text("NOT deleted"),
    )
    op.create_table(
        "action_tags",
        sa.Column("id", _ID, nullable=False),
        sa.Column("tag_id", _ID, nullable=False),
        sa.Column("action_id", _ID, nullable=False),
        sa.ForeignKeyConstraint(["tag_id"], ["tags.id"]),
        sa.ForeignKeyConstraint(["action_id"], ["actions.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tag_id", "action_id"),
    )
    op.create_index("ix_action_tags_tag_id", "action_tags", ["tag_id"])
    op.create_index("ix_action_tags_action_id", "action_tags", ["action_id"])


def downgrade() -> None:
    op.drop_table("action_tags")
    op.drop_table("actions")
