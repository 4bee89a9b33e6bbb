"""API tokens (stored hashed) and idempotency keys (stored with the events they produced).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE api_tokens (
            name        text PRIMARY KEY,
            role        text NOT NULL CHECK (role IN ('reader', 'writer', 'admin')),
            token_hash  text NOT NULL UNIQUE,  -- sha256 of the token; the token itself is never stored
            created_at  timestamptz NOT NULL DEFAULT now(),
            revoked_at  timestamptz
        );

        -- The first successful response to a command sent with an Idempotency-Key, written in the
        -- same transaction as the command's events: a retry finds it, or finds nothing was done.
        CREATE TABLE idempotency_keys (
            actor       text NOT NULL,
            key         text NOT NULL,
            fingerprint text NOT NULL,
            status      integer NOT NULL,
            body        jsonb NOT NULL,
            headers     jsonb NOT NULL,
            created_at  timestamptz NOT NULL DEFAULT now(),
            expires_at  timestamptz NOT NULL,
            PRIMARY KEY (actor, key)
        );
        CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE idempotency_keys, api_tokens")
