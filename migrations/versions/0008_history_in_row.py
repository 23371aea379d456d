"""A transaction's state history moves into its own row: one row and one index entry
less per state a transaction enters.

Revision ID: 0008
Revises: 0007

`transaction_events` held one row per state (and its primary key's index entry); the
group commit writes the transaction's row anyway, on insert and on every flip, so the
history goes with it as a JSON array of `[status, at]`, in the order entered. The
tenant's log holds every change, hash-chained, for whoever needs the history to be
tamper-evident (`POST /v1/verify` checks each row against it).
"""

from alembic import op

revision = "0008"
down_revision = "0007"

STATE_ORDER = "CASE e.status WHEN 'PENDING' THEN 0 WHEN 'REVERSED' THEN 2 ELSE 1 END"


def upgrade() -> None:
    op.execute("ALTER TABLE transactions ADD COLUMN history jsonb NOT NULL DEFAULT '[]'")
    op.execute(f"""
        UPDATE transactions t SET history = h.history
        FROM (SELECT tenant, transaction_id,
                     jsonb_agg(jsonb_build_array(e.status, e.at) ORDER BY e.at, {STATE_ORDER})
                         AS history
              FROM transaction_events e GROUP BY tenant, transaction_id) h
        WHERE t.tenant = h.tenant AND t.id = h.transaction_id
    """)
    op.execute("DROP TABLE transaction_events")


def downgrade() -> None:
    op.execute("""
        CREATE TABLE transaction_events (
            tenant         text        NOT NULL,
            transaction_id text        NOT NULL,
            status         text        NOT NULL,
            at             timestamptz NOT NULL,
            PRIMARY KEY (tenant, transaction_id, status)
        )
    """)
    op.execute("""
        INSERT INTO transaction_events (tenant, transaction_id, status, at)
        SELECT t.tenant, t.id, e ->> 0, (e ->> 1)::timestamptz
        FROM transactions t, jsonb_array_elements(t.history) AS e
    """)
    op.execute("ALTER TABLE transactions DROP COLUMN history")
