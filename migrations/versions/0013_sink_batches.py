"""Webhook sinks send up to `batch_max` events in one request.

Revision ID: 0013
Revises: 0012
"""

from alembic import op

revision = "0013"
down_revision = "0012"


def upgrade() -> None:
    op.execute("ALTER TABLE sinks ADD COLUMN batch_max integer NOT NULL DEFAULT 1")


def downgrade() -> None:
    op.execute("ALTER TABLE sinks DROP COLUMN batch_max")
