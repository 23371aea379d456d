"""Search: containment indexes on data and lines, the transactions keyset order.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    # `terms` and `ranges` on data: containment by GIN (jsonb_path_ops is small and fast).
    op.execute("CREATE INDEX accounts_data ON accounts USING gin (data jsonb_path_ops)")
    op.execute("CREATE INDEX transactions_data ON transactions USING gin (data jsonb_path_ops)")
    # An account's (or a currency's) transactions without a scan: lines @> [{"account": ..}].
    op.execute("CREATE INDEX transactions_lines ON transactions USING gin (lines jsonb_path_ops)")
    # The keyset order of transaction pages: oldest first by timestamp, then id.
    op.execute("CREATE INDEX transactions_order ON transactions (tenant, timestamp, id)")
    # An account's transactions in page order, one ordered range scan whatever the
    # account's size (the GIN index alone left the planner a 500k-row filtered scan).
    op.execute(
        """
        CREATE TABLE transaction_accounts (
            tenant         text        NOT NULL,
            account        text        NOT NULL,
            timestamp      timestamptz NOT NULL,
            transaction_id text        NOT NULL,
            PRIMARY KEY (tenant, account, timestamp, transaction_id)
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE transaction_accounts")
    for index in ("transactions_order", "transactions_lines", "transactions_data", "accounts_data"):
        op.execute(f"DROP INDEX {index}")
