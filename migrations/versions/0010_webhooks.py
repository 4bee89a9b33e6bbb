"""Webhooks: the endpoints operators register, and one delivery per (endpoint, event).

An endpoint's signing secret is kept wrapped under the master key, as customers' data keys are (it
is shown once, at registration). A delivery is the truth of what was sent: its status (pending,
queued, retrying, delivered, failed), attempts, the last answer and the next attempt; rq jobs only
carry it out, and a delivery whose job was lost is queued again.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE webhook_endpoints (
            id              uuid PRIMARY KEY,
            url             text NOT NULL,
            event_types     text[] NOT NULL,
            description     text NOT NULL DEFAULT '',
            secret_wrapped  bytea NOT NULL,
            master_key_id   text NOT NULL,
            enabled         boolean NOT NULL DEFAULT true,
            disabled_reason text,
            failing_since   timestamptz,
            created_at      timestamptz NOT NULL DEFAULT now(),
            updated_at      timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE webhook_deliveries (
            id               bigserial PRIMARY KEY,
            endpoint_id      uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
            event_id         uuid NOT NULL,
            stream_id        text NOT NULL,
            version          int NOT NULL,
            position         bigint NOT NULL,
            event_type       text NOT NULL,
            status           text NOT NULL CHECK (status IN ('pending', 'queued', 'retrying', 'delivered', 'failed')),
            attempts         int NOT NULL DEFAULT 0,
            attempts_before  int NOT NULL DEFAULT 0,  -- of them, made before its last redelivery
            last_status_code int,
            last_error       text,
            last_attempt_at  timestamptz,
            next_attempt_at  timestamptz NOT NULL DEFAULT now(),
            queued_at        timestamptz,
            job_id           text,
            created_at       timestamptz NOT NULL DEFAULT now(),
            delivered_at     timestamptz,
            UNIQUE (endpoint_id, event_id)
        );
        CREATE INDEX webhook_deliveries_open ON webhook_deliveries (endpoint_id, stream_id, version)
            WHERE status IN ('pending', 'queued', 'retrying');
        -- due: pending or retrying when its next attempt comes; queued when its lease runs out
        CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
            WHERE status IN ('pending', 'retrying', 'queued');
        CREATE INDEX webhook_deliveries_of_endpoint ON webhook_deliveries (endpoint_id, position DESC);
        CREATE INDEX webhook_deliveries_by_status ON webhook_deliveries (endpoint_id, status);
        CREATE INDEX webhook_deliveries_settled ON webhook_deliveries (last_attempt_at)
            WHERE status IN ('delivered', 'failed');
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE webhook_deliveries; DROP TABLE webhook_endpoints;")
