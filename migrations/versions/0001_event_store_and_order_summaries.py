"""Event store (append-only, with outbox) and the order_summaries projection.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE events (
            position       bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
            event_id       uuid NOT NULL UNIQUE,
            stream_id      text NOT NULL,
            version        integer NOT NULL CHECK (version > 0),
            type           text NOT NULL,
            schema_version integer NOT NULL DEFAULT 1,
            payload        jsonb NOT NULL,
            metadata       jsonb NOT NULL DEFAULT '{}',
            recorded_at    timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT events_pkey PRIMARY KEY (stream_id, version)
        );
        CREATE INDEX events_type_position ON events (type, position);

        -- The log is append-only in the database itself, whoever connects.
        CREATE FUNCTION events_are_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'events are append-only: % is not allowed', TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END $$;
        CREATE TRIGGER events_no_update_delete BEFORE UPDATE OR DELETE ON events
            FOR EACH ROW EXECUTE FUNCTION events_are_immutable();
        CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
            FOR EACH STATEMENT EXECUTE FUNCTION events_are_immutable();

        -- Every event enters the outbox in its own transaction; the relay deletes rows once published.
        CREATE TABLE outbox (position bigint PRIMARY KEY REFERENCES events (position));
        CREATE FUNCTION events_to_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO outbox (position) SELECT position FROM new_events;
            RETURN NULL;
        END $$;
        CREATE TRIGGER events_to_outbox AFTER INSERT ON events
            REFERENCING NEW TABLE AS new_events FOR EACH STATEMENT EXECUTE FUNCTION events_to_outbox();
        CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('orderstream_outbox', '');
            RETURN NULL;
        END $$;
        CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
            FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();

        -- Per projection and source stream: the last version applied (updated with the rows).
        CREATE TABLE projection_checkpoints (
            projection text NOT NULL,
            stream_id  text NOT NULL,
            version    integer NOT NULL,
            PRIMARY KEY (projection, stream_id)
        );

        CREATE TABLE order_summaries (
            order_id            uuid PRIMARY KEY,
            customer_id         text NOT NULL,
            currency            char(3) NOT NULL,
            status              text NOT NULL,
            total               numeric NOT NULL,
            paid_amount         numeric NOT NULL,
            refunded_amount     numeric NOT NULL,
            carrier             text,
            tracking_number     text,
            cancellation_reason text,
            version             integer NOT NULL,
            last_position       bigint NOT NULL,
            created_at          timestamptz NOT NULL,
            updated_at          timestamptz NOT NULL
        );
        CREATE INDEX order_summaries_created ON order_summaries (created_at DESC, order_id);
        CREATE INDEX order_summaries_status ON order_summaries (status, created_at DESC);
        CREATE INDEX order_summaries_customer ON order_summaries (customer_id, created_at DESC);

        CREATE TABLE order_items (
            order_id   uuid NOT NULL REFERENCES order_summaries (order_id),
            sku        text NOT NULL,
            quantity   integer NOT NULL,
            unit_price numeric NOT NULL,
            PRIMARY KEY (order_id, sku)
        );
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE order_items, order_summaries, projection_checkpoints, outbox;
        DROP TRIGGER events_no_truncate ON events;
        DROP TABLE events;
        DROP FUNCTION events_are_immutable, events_to_outbox, outbox_notify;
        """
    )
