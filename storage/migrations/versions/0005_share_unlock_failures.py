"""Sharing: failed share-password guesses, counted per client address and per link.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 00:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "share_unlock_failures",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "sharing_configuration_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("client", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["sharing_configuration_id"], ["sharing_configurations.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("share_unlock_failures", schema=None) as batch_op:
        batch_op.create_index("ix_share_unlock_failures_client_at", ["client", "at"], unique=False)
        batch_op.create_index(
            "ix_share_unlock_failures_config_at", ["sharing_configuration_id", "at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_share_unlock_failures_at"), ["at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("share_unlock_failures", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_share_unlock_failures_at"))
        batch_op.drop_index("ix_share_unlock_failures_config_at")
        batch_op.drop_index("ix_share_unlock_failures_client_at")
    op.drop_table("share_unlock_failures")
