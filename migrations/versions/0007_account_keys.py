"""Account keys and the proofs of signed transactions.

Revision ID: 0007
Revises: 0006

An account's current keys and its retired ones live on its row (both small, read with
the account); `keys = '[]'` is an account nobody owns, the common case, which costs a
write nothing. A signed request's exact bytes and headers are kept once in `proofs`,
and each transaction it recorded points at them from `transaction_proofs` (a batch of
thousands of items keeps its body once).
"""

from alembic import op

revision = "0007"
down_revision = "0006"

UPGRADE = [
    "ALTER TABLE accounts ADD COLUMN keys jsonb NOT NULL DEFAULT '[]'",
    "ALTER TABLE accounts ADD COLUMN key_history jsonb NOT NULL DEFAULT '[]'",
    """CREATE TABLE proofs (
    tenant  text  NOT NULL,
    id      uuid  NOT NULL,
    method  text  NOT NULL,
    path    text  NOT NULL,
    body    bytea NOT NULL,
    headers jsonb NOT NULL,
    PRIMARY KEY (tenant, id)
)""",
    """CREATE TABLE transaction_proofs (
    tenant         text NOT NULL,
    transaction_id text NOT NULL,
    proof          uuid NOT NULL,
    PRIMARY KEY (tenant, transaction_id)
)""",
    # `twofold_append_only` is migration 0001's.
    "CREATE TRIGGER proofs_append_only BEFORE UPDATE OR DELETE ON proofs"
    " FOR EACH ROW EXECUTE FUNCTION twofold_append_only()",
    "CREATE TRIGGER transaction_proofs_append_only BEFORE UPDATE OR DELETE"
    " ON transaction_proofs FOR EACH ROW EXECUTE FUNCTION twofold_append_only()",
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE transaction_proofs")
    op.execute("DROP TABLE proofs")
    op.execute("ALTER TABLE accounts DROP COLUMN key_history")
    op.execute("ALTER TABLE accounts DROP COLUMN keys")
