"""Idempotency keys belong to a principal (the token's identity), not to a display name.

Before, keys were scoped by the actor's name, and a token named like the environment's admin shared
its keys. Principals are "token:<name>" for stored tokens and "env:admin" for ORDERSTREAM_ADMIN_TOKEN.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE idempotency_keys RENAME COLUMN actor TO principal;
        UPDATE idempotency_keys
            SET principal = CASE WHEN principal = 'env-admin' THEN 'env:admin' ELSE 'token:' || principal END;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        UPDATE idempotency_keys SET principal = CASE WHEN principal = 'env:admin' THEN 'env-admin'
            ELSE substr(principal, length('token:') + 1) END;
        ALTER TABLE idempotency_keys RENAME COLUMN principal TO actor;
        """
    )
