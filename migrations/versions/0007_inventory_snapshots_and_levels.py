"""Inventory: snapshots of aggregate state beside the log, and the inventory_levels read model.

`snapshots` holds a stream's folded state at a version, so loading a SKU whose stream grows with
every reservation reads the newest snapshot and the events after it. It is never the source of
truth: a snapshot of an older schema_version is ignored, and deleting them all changes no answer.
`inventory_levels` is the projection behind GET /inventory (one row per tracked SKU).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE snapshots (
            stream_id      text NOT NULL,
            version        int NOT NULL,
            schema_version int NOT NULL,
            state          jsonb NOT NULL,
            taken_at       timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (stream_id, version)
        );
        CREATE TABLE inventory_levels (
            sku           text PRIMARY KEY,
            on_hand       bigint NOT NULL,
            reserved      bigint NOT NULL,
            available     bigint NOT NULL,
            version       int NOT NULL,
            last_position bigint NOT NULL,
            updated_at    timestamptz NOT NULL
        );
        CREATE INDEX inventory_levels_available ON inventory_levels (available, sku);
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE inventory_levels; DROP TABLE snapshots;")
