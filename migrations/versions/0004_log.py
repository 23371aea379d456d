"""The tenant's log (hash-chained events in commit order) and the sinks that read it.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"

ZEROS = "0" * 64

UPGRADE = f"""
-- The newest event of each tenant's log. The group commit's last statement locks it, so
-- sequences are handed out in commit order and never skip (a rollback returns them).
CREATE TABLE log_heads (
    tenant   text        PRIMARY KEY,
    sequence bigint      NOT NULL DEFAULT 0,
    hash     text        NOT NULL DEFAULT '{ZEROS}',
    at       timestamptz
);

-- `body` is the event without `hash`, canonical by RFC 8785: the exact text hashed.
CREATE TABLE events (
    tenant   text        NOT NULL,
    sequence bigint      NOT NULL,
    type     text        NOT NULL,
    at       timestamptz NOT NULL,
    body     text        NOT NULL,
    hash     text        NOT NULL,
    PRIMARY KEY (tenant, sequence)
);
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION twofold_append_only();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION twofold_append_only();

CREATE TABLE sinks (
    tenant          text        NOT NULL,
    id              text        NOT NULL,
    type            text        NOT NULL,
    url             text        NOT NULL,
    types           jsonb,
    secret          text,
    fingerprint     text        NOT NULL,
    delivered       bigint      NOT NULL,
    failures        integer     NOT NULL DEFAULT 0,
    last_error      text,
    last_attempt_at timestamptz,
    next_attempt_at timestamptz,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    lease_owner     text,
    lease_until     timestamptz,
    PRIMARY KEY (tenant, id)
);
"""

DOWNGRADE = """
DROP TABLE sinks;
DROP TABLE events;
DROP TABLE log_heads;
"""


def _run(script: str) -> None:
    # NOTE: asyncpg prepares every statement, and a prepared statement holds one command.
    for statement in script.split(";\n"):
        if statement.strip():
            op.execute(statement)


def upgrade() -> None:
    _run(UPGRADE)


def downgrade() -> None:
    _run(DOWNGRADE)
