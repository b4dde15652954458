"""Alerts: thresholds, alert configurations (soft-deleted) and their checks.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 00:11:02.038894
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "alert_thresholds",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("environment_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("insight_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("configuration", sa.JSON(), nullable=False),
        sa.Column("created_by_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
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
    )
    with op.batch_alter_table("alert_thresholds", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alert_thresholds_insight_id"), ["insight_id"], unique=False)

    op.create_table(
        "alert_configurations",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("environment_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("insight_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("threshold_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("subscribed_users", sa.JSON(), nullable=False),
        sa.Column("condition", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("last_notified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_check_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("detector_config", sa.JSON(), nullable=True),
        sa.Column("calculation_interval", sa.String(length=20), nullable=False),
        sa.Column("snoozed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("skip_weekend", sa.Boolean(), nullable=False),
        sa.Column("schedule_restriction", sa.JSON(), nullable=True),
        sa.Column("last_value", sa.Float(), nullable=True),
        sa.Column("investigation_agent_enabled", sa.Boolean(), nullable=False),
        sa.Column("investigation_gates_notifications", sa.Boolean(), nullable=False),
        sa.Column("investigation_inconclusive_action", sa.String(length=40), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("created_by_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
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
        sa.ForeignKeyConstraint(
            ["threshold_id"],
            ["alert_thresholds.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("alert_configurations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_alert_configurations_environment_id"), ["environment_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_alert_configurations_insight_id"), ["insight_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_alert_configurations_threshold_id"), ["threshold_id"], unique=False
        )
        batch_op.create_index("ix_alerts_due", ["enabled", "deleted", "next_check_at"], unique=False)

    op.create_table(
        "alert_checks",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("alert_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("calculated_value", sa.Float(), nullable=True),
        sa.Column("condition", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("targets_notified", sa.JSON(), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("anomaly_scores", sa.JSON(), nullable=True),
        sa.Column("triggered_points", sa.JSON(), nullable=True),
        sa.Column("triggered_dates", sa.JSON(), nullable=True),
        sa.Column("interval", sa.String(length=20), nullable=True),
        sa.Column("triggered_metadata", sa.JSON(), nullable=True),
        sa.Column("notification_sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["alert_id"],
            ["alert_configurations.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("alert_checks", schema=None) as batch_op:
        batch_op.create_index("ix_alert_checks_alert_created", ["alert_id", "created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("alert_checks", schema=None) as batch_op:
        batch_op.drop_index("ix_alert_checks_alert_created")

    op.drop_table("alert_checks")
    with op.batch_alter_table("alert_configurations", schema=None) as batch_op:
        batch_op.drop_index("ix_alerts_due")
        batch_op.drop_index(batch_op.f("ix_alert_configurations_threshold_id"))
        batch_op.drop_index(batch_op.f("ix_alert_configurations_insight_id"))
        batch_op.drop_index(batch_op.f("ix_alert_configurations_environment_id"))

    op.drop_table("alert_configurations")
    with op.batch_alter_table("alert_thresholds", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alert_thresholds_insight_id"))

    op.drop_table("alert_thresholds")
