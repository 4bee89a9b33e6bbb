"""Shipments' service level (ProductShipped v2), projection rebuild records, the sales statistics read model.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        -- What a rebuild gives for rows written before version 2 (the upcaster's default).
        ALTER TABLE order_summaries ADD COLUMN service_level text;
        UPDATE order_summaries SET service_level = 'standard' WHERE carrier IS NOT NULL;

        -- Projection tables are swapped whole by rebuilds; the projector keeps them consistent.
        ALTER TABLE order_items DROP CONSTRAINT order_items_order_id_fkey;

        CREATE TABLE projection_rebuilds (
            id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            projection    text NOT NULL,
            status        text NOT NULL CHECK (status IN ('queued', 'replaying', 'swapping', 'done', 'failed')),
            job_id        text,
            events_total  bigint NOT NULL DEFAULT 0,
            events_done   bigint NOT NULL DEFAULT 0,
            rate          double precision,
            requested_at  timestamptz NOT NULL DEFAULT now(),
            started_at    timestamptz,
            finished_at   timestamptz,
            error         text
        );
        CREATE UNIQUE INDEX projection_rebuilds_one_active ON projection_rebuilds (projection)
            WHERE status IN ('queued', 'replaying', 'swapping');

        -- The sales_stats read model: its own memory of each order, and the figures it serves.
        CREATE TABLE sales_orders (
            order_id    uuid PRIMARY KEY,
            customer_id text NOT NULL,
            currency    char(3) NOT NULL
        );
        CREATE TABLE sales_daily (
            day      date NOT NULL,
            currency char(3) NOT NULL,
            orders   integer NOT NULL DEFAULT 0,
            revenue  numeric NOT NULL DEFAULT 0,
            refunds  numeric NOT NULL DEFAULT 0,
            PRIMARY KEY (day, currency)
        );
        CREATE TABLE customer_stats (
            customer_id    text NOT NULL,
            currency       char(3) NOT NULL,
            orders         integer NOT NULL DEFAULT 0,
            paid_orders    integer NOT NULL DEFAULT 0,
            lifetime_value numeric NOT NULL DEFAULT 0,
            first_order_at timestamptz,
            last_order_at  timestamptz,
            PRIMARY KEY (customer_id, currency)
        );
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE customer_stats, sales_daily, sales_orders, projection_rebuilds;
        DELETE FROM projection_checkpoints WHERE projection = 'sales_stats';
        ALTER TABLE order_summaries DROP COLUMN service_level;
        """
    )
