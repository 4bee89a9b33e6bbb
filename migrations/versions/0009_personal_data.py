"""Personal data: customers' data keys, customer-bound and personal-data tokens, sealed data on orders.

`data_keys` holds each customer's data key, wrapped under the master key (never in clear); one live
key per customer. Erasure destroys the wrapped key (the column is set to NULL) and records who and
when; sealed copies of the data, in events or rows, can no longer be opened. `order_summaries.personal`
holds an order's personal data as sealed in its OrderCreated (opened only when a response needs it).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE data_keys (
            key_id        uuid PRIMARY KEY,
            customer_id   text NOT NULL,
            wrapped       bytea,
            master_key_id text,
            created_at    timestamptz NOT NULL DEFAULT now(),
            erased_at     timestamptz,
            erased_by     text,
            CHECK ((wrapped IS NULL) = (erased_at IS NOT NULL))
        );
        CREATE UNIQUE INDEX data_keys_live ON data_keys (customer_id) WHERE erased_at IS NULL;
        CREATE INDEX data_keys_customer ON data_keys (customer_id);
        ALTER TABLE api_tokens ADD COLUMN customer_id text, ADD COLUMN personal_data boolean NOT NULL DEFAULT false,
            DROP CONSTRAINT api_tokens_role_check,
            ADD CONSTRAINT api_tokens_role_check CHECK (role IN ('customer', 'reader', 'writer', 'admin')),
            ADD CONSTRAINT api_tokens_customer
                CHECK ((role = 'customer') = (customer_id IS NOT NULL) AND customer_id <> '');
        ALTER TABLE order_summaries ADD COLUMN personal jsonb;
        """
    )


def downgrade() -> None:
    # Dropping data_keys would erase every customer's personal data at once, silently: refused.
    op.execute(
        "DO $$ BEGIN IF EXISTS (SELECT 1 FROM data_keys) THEN RAISE EXCEPTION"
        " 'data_keys holds customers'' data keys: a downgrade would erase all personal data; export or erase"
        " it first'; END IF; END $$"
    )
    op.execute(
        "ALTER TABLE order_summaries DROP COLUMN personal;"
        " DELETE FROM api_tokens WHERE role = 'customer';"
        " ALTER TABLE api_tokens DROP CONSTRAINT api_tokens_customer, DROP COLUMN customer_id,"
        " DROP COLUMN personal_data, DROP CONSTRAINT api_tokens_role_check,"
        " ADD CONSTRAINT api_tokens_role_check CHECK (role IN ('reader', 'writer', 'admin'));"
        " DROP TABLE data_keys;"
    )
