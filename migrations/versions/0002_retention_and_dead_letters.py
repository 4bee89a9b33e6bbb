"""Outbox retention (published rows kept until every group acknowledged them) and dead letters.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        -- A published outbox row remembers where its event went. It stays until every consumer group
        -- has acknowledged that entry; if Redis loses the stream, the relay publishes these rows again.
        ALTER TABLE outbox
            ADD COLUMN stream_partition smallint,
            ADD COLUMN entry_ms bigint,
            ADD COLUMN entry_seq bigint;
        CREATE INDEX outbox_unpublished ON outbox (position) WHERE entry_ms IS NULL;
        CREATE INDEX outbox_published ON outbox (stream_partition, entry_ms, entry_seq) WHERE entry_ms IS NOT NULL;

        -- The newest entry id the relay wrote to each partition stream: a stream whose last id is older
        -- (or a stream that is gone) means Redis lost data.
        CREATE TABLE relay_partitions (
            stream_partition smallint PRIMARY KEY,
            last_ms bigint NOT NULL,
            last_seq bigint NOT NULL,
            published_at timestamptz NOT NULL DEFAULT now()
        );

        CREATE TABLE dead_letters (
            id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            projection      text NOT NULL,
            stream_key      text NOT NULL,
            entry_id        text NOT NULL,
            event_id        uuid,
            stream_id       text,
            version         integer,
            event_type      text,
            entry           jsonb NOT NULL,
            error           text NOT NULL,
            consumer        text NOT NULL,
            attempts        integer NOT NULL,
            failed_at       timestamptz NOT NULL DEFAULT now(),
            status          text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'redriven', 'discarded')),
            redrive_job_id  text,
            resolved_at     timestamptz,
            resolution      text
        );
        CREATE UNIQUE INDEX dead_letters_open_entry ON dead_letters (projection, stream_key, entry_id)
            WHERE status = 'open';
        CREATE INDEX dead_letters_status ON dead_letters (status, id);
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE dead_letters, relay_partitions;
        DROP INDEX outbox_unpublished, outbox_published;
        ALTER TABLE outbox DROP COLUMN stream_partition, DROP COLUMN entry_ms, DROP COLUMN entry_seq;
        """
    )
