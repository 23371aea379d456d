"""Core ledger: accounts, balance heads, transactions, the append-only journal.

Revision ID: 0001
Revises:
"""

from alembic import op

revision = "0001"
down_revision = None

MONEY = "numeric(38, 18)"

UPGRADE = f"""
CREATE TABLE accounts (
    tenant       text        NOT NULL,
    id           text        NOT NULL,
    balance_rule text        NOT NULL
        CHECK (balance_rule IN ('non_negative', 'non_positive', 'any')),
    data         jsonb       NOT NULL DEFAULT '{{}}',
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (tenant, id)
);

-- The current head per account and currency: the only rows ever updated.
CREATE TABLE balances (
    tenant      text        NOT NULL,
    account     text        NOT NULL,
    currency    text        NOT NULL,
    posted      {MONEY}     NOT NULL DEFAULT 0,
    pending_in  {MONEY}     NOT NULL DEFAULT 0,
    pending_out {MONEY}     NOT NULL DEFAULT 0,
    version     bigint      NOT NULL DEFAULT 0,
    last_ts     timestamptz,
    PRIMARY KEY (tenant, account, currency)
);

CREATE TABLE transactions (
    tenant          text        NOT NULL,
    id              text        NOT NULL,
    status          text        NOT NULL,
    mode            text        NOT NULL,
    lines           jsonb       NOT NULL,
    data            jsonb       NOT NULL DEFAULT '{{}}',
    timestamp       timestamptz,
    timestamp_given boolean     NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at      timestamptz,
    failure         jsonb,
    reverses        text,
    reversal_id     text,
    fingerprint     text        NOT NULL,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX transactions_expiring ON transactions (expires_at)
    WHERE status = 'PENDING' AND expires_at IS NOT NULL;

-- The append-only journal: every hold, release and post, with the balances after it.
CREATE TABLE entries (
    tenant         text        NOT NULL,
    account        text        NOT NULL,
    currency       text        NOT NULL,
    seq            bigint      NOT NULL,
    transaction_id text        NOT NULL,
    kind           text        NOT NULL CHECK (kind IN ('hold', 'release', 'post')),
    amount         {MONEY}     NOT NULL,
    posted         {MONEY}     NOT NULL,
    pending_in     {MONEY}     NOT NULL,
    pending_out    {MONEY}     NOT NULL,
    timestamp      timestamptz NOT NULL,
    PRIMARY KEY (tenant, account, currency, seq)
);
-- Balance at an instant: one probe per currency.
CREATE INDEX entries_at ON entries (tenant, account, currency, timestamp, seq);
-- An account's journal across currencies, oldest first.
CREATE INDEX entries_journal ON entries (tenant, account, timestamp, currency, seq);

-- The append-only state history, also the outbox for event delivery.
CREATE TABLE transaction_events (
    seq            bigserial   NOT NULL,
    tenant         text        NOT NULL,
    transaction_id text        NOT NULL,
    status         text        NOT NULL,
    at             timestamptz NOT NULL,
    PRIMARY KEY (tenant, transaction_id, status)
);
CREATE INDEX transaction_events_seq ON transaction_events (seq);

CREATE FUNCTION twofold_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'table % is append-only: % is not allowed', TG_TABLE_NAME, TG_OP;
END
$$;
CREATE TRIGGER entries_append_only BEFORE UPDATE OR DELETE ON entries
    FOR EACH ROW EXECUTE FUNCTION twofold_append_only();
CREATE TRIGGER entries_no_truncate BEFORE TRUNCATE ON entries
    FOR EACH STATEMENT EXECUTE FUNCTION twofold_append_only();
CREATE TRIGGER transaction_events_append_only BEFORE UPDATE OR DELETE ON transaction_events
    FOR EACH ROW EXECUTE FUNCTION twofold_append_only();
CREATE TRIGGER transaction_events_no_truncate BEFORE TRUNCATE ON transaction_events
    FOR EACH STATEMENT EXECUTE FUNCTION twofold_append_only();
"""

DOWNGRADE = """
DROP TABLE transaction_events;
DROP TABLE entries;
DROP FUNCTION twofold_append_only();
DROP TABLE transactions;
DROP TABLE balances;
DROP TABLE accounts;
"""


def statements(script: str) -> list[str]:
    """Split a script on `;` at line ends, keeping `$$` bodies whole.

    NOTE: asyncpg prepares every statement, and a prepared statement holds one command.
    """
    parts: list[str] = []
    pending = ""
    for chunk in script.split(";\n"):
        pending = f"{pending};\n{chunk}" if pending else chunk
        if pending.count("$$") % 2 == 0:
            if pending.strip():
                parts.append(pending.strip())
            pending = ""
    return parts


def upgrade() -> None:
    for statement in statements(UPGRADE):
        op.execute(statement)


def downgrade() -> None:
    for statement in statements(DOWNGRADE):
        op.execute(statement)
