"""A group commit's check that it recorded every new transaction it meant to.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    # The write of a group commit and its COMMIT go in one round trip, so the check that
    # no other process recorded one of its ids first is made by the database: it raises
    # unique_violation, the transaction rolls back and the batch runs again.
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


def downgrade() -> None:
    op.execute("DROP FUNCTION twofold_expect_recorded(bigint, bigint)")
