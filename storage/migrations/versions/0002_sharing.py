"""Sharing: configurations (one active per insight, rotated ones expire), share passwords, share sessions.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 00:02:37.157714
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sharing_configurations",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("environment_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("insight_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("access_token", sa.String(length=400), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("settings", sa.JSON(), nullable=True),
        sa.Column("password_required", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["users.id"],
        ),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
        ),
        sa.ForeignKeyConstraint(
            ["insight_id"],
            ["insights.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("access_token"),
    )
    with op.batch_alter_table("sharing_configurations", schema=None) as batch_op:
        batch_op.create_index("ix_sharing_insight_expires", ["insight_id", "expires_at"], unique=False)

    op.create_table(
        "share_passwords",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "sharing_configuration_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("note", sa.String(length=100), nullable=False),
        sa.Column("created_by_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["users.id"],
        ),
        sa.ForeignKeyConstraint(
            ["sharing_configuration_id"],
            ["sharing_configurations.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("share_passwords", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_share_passwords_sharing_configuration_id"),
            ["sharing_configuration_id"],
            unique=False,
        )

    op.create_table(
        "share_sessions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column(
            "sharing_configuration_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("share_password_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["share_password_id"],
            ["share_passwords.id"],
        ),
        sa.ForeignKeyConstraint(
            ["sharing_configuration_id"],
            ["sharing_configurations.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    with op.batch_alter_table("share_sessions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_share_sessions_share_password_id"), ["share_password_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_share_sessions_sharing_configuration_id"),
            ["sharing_configuration_id"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("share_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_share_sessions_sharing_configuration_id"))
        batch_op.drop_index(batch_op.f("ix_share_sessions_share_password_id"))

    op.drop_table("share_sessions")
    with op.batch_alter_table("share_passwords", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_share_passwords_sharing_configuration_id"))

    op.drop_table("share_passwords")
    with op.batch_alter_table("sharing_configurations", schema=None) as batch_op:
        batch_op.drop_index("ix_sharing_insight_expires")

    op.drop_table("sharing_configurations")
