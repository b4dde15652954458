"""Alerts: a webhook URL per alert.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 00:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("alert_configurations") as batch:
        batch.add_column(sa.Column("webhook_url", sa.String(length=2048), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("alert_configurations") as batch:
        batch.drop_column("webhook_url")
