"""Fulfilment: the process manager's state per order, with its payment deadline.

One row per order the fulfilment process manager has reacted to: where its stock stands (reserved,
rejected, released, shipped), the units it holds, the lines that were short, and the payment
deadline (due at, and pending / met / cancelled / fired). Written only by the process manager, in
the transaction of its reaction and its checkpoints, and by the deadline job, which locks a due row,
cancels the order and marks the deadline fired in one transaction: PostgreSQL is the timer's truth.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE fulfilment (
            order_id       uuid PRIMARY KEY,
            state          text NOT NULL,
            reserved       jsonb NOT NULL,
            short          jsonb,
            payment_due_at timestamptz,
            deadline       text,
            order_version  int NOT NULL,
            updated_at     timestamptz NOT NULL
        );
        CREATE INDEX fulfilment_due ON fulfilment (payment_due_at) WHERE deadline = 'pending';
        CREATE INDEX fulfilment_state ON fulfilment (state, order_id);
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE fulfilment;")
