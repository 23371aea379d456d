"""The group commit inserts its new transactions without `ON CONFLICT`.

Revision ID: 0012
Revises: 0011

`twofold_expect_recorded` compared how many rows `INSERT … ON CONFLICT DO NOTHING`
recorded with how many the batch meant to, and raised `unique_violation` when another
process had recorded one of its ids first. A plain insert raises it by itself; the
speculative insertion behind `ON CONFLICT` probed each key twice and wrote a confirmation
record to the WAL for every new transaction.
"""

from alembic import op

revision = "0012"
down_revision = "0011"


def upgrade() -> None:
    op.execute("DROP FUNCTION twofold_expect_recorded(bigint, bigint)")


def downgrade() -> None:
    # Migration 0003's function, for the statement of the code before this revision.
    op.execute(
        """
        CREATE FUNCTION twofold_expect_recorded(recorded bigint, expected bigint)
        RETURNS bigint LANGUAGE plpgsql AS $$
        BEGIN
            IF recorded <> expected THEN
                RAISE EXCEPTION 'another request recorded one of these transactions first'
                    USING ERRCODE = 'unique_violation';
            END IF;
            RETURN recorded;
        END
        $$
        """
    )
