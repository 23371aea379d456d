"""Only transactions with an `expires_at` enter the index the expiry sweep reads: one
index entry less for every other transaction.

Revision ID: 0010
Revises: 0009

`transactions_expiring` indexed `expires_at` for every row, NULL included, so every
immediate transaction (and every hold without an expiry) paid a B-tree insert that the
sweep, which only looks for holds past their `expires_at`, never reads. `expires_at` is
never changed once written, so a predicate on it keeps a transaction's later updates
HOT-eligible, as they were (a predicate on `status` would not).
"""

from alembic import op

revision = "0010"
down_revision = "0009"


def upgrade() -> None:
    op.execute("DROP INDEX transactions_expiring")
    op.execute(
        "CREATE INDEX transactions_expiring ON transactions (expires_at)"
        " WHERE expires_at IS NOT NULL"
    )


def downgrade() -> None:
    op.execute("DROP INDEX transactions_expiring")
    op.execute("CREATE INDEX transactions_expiring ON transactions (expires_at)")
