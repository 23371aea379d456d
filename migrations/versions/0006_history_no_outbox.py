"""The state history is no longer the outbox: the log is. Its serial and index go.

Revision ID: 0006
Revises: 0005

`transaction_events.seq` (a bigserial with an index of its own) ordered the history for
delivery; the tenant's log now carries every change in commit order. A transaction's
states are ordered by their instant, then by the state machine's own order, which
never enters a state twice. One index entry and one sequence number less per state.
"""

from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    op.execute("DROP INDEX transaction_events_seq")
    op.execute("ALTER TABLE transaction_events DROP COLUMN seq")


def downgrade() -> None:
    op.execute("ALTER TABLE transaction_events ADD COLUMN seq bigserial NOT NULL")
    op.execute("CREATE INDEX transaction_events_seq ON transaction_events (seq)")
