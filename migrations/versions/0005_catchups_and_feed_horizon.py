"""A record of each projection's completed catch-up from history; each event's transaction id.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        -- A projection whose catch-up from the event store was interrupted runs it again on start.
        CREATE TABLE projection_catchups (
            projection   text PRIMARY KEY,
            completed_at timestamptz NOT NULL DEFAULT now()
        );
        INSERT INTO projection_catchups (projection)
            SELECT DISTINCT projection FROM projection_checkpoints;

        -- The audit feed serves only events of transactions older than every running one, so a
        -- cursor never passes a position whose transaction has not committed yet.
        ALTER TABLE events ADD COLUMN tx xid8 NOT NULL DEFAULT pg_current_xact_id();
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE projection_catchups; ALTER TABLE events DROP COLUMN tx")
