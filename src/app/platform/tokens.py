"""API tokens: created (shown once), listed, revoked; stored as SHA-256 hashes only.

Tokens carry 256 bits of entropy, so a slow hash would add nothing. A token's name is the actor
recorded in events' metadata, so names the system uses for itself (env-admin for the environment's
admin token, anonymous, system...) cannot be given to a token.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Any

from sqlalchemy import Engine, text

from app.platform.validation import IDENTIFIER_PATTERN

TOKEN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
RESERVED_NAMES = frozenset({"env-admin", "anonymous"})
RESERVED_PREFIXES = ("env-", "system", "orderstream")

CUSTOMER_ID = re.compile(IDENTIFIER_PATTERN)


class InvalidTokenName(ValueError):
    """A token name that is malformed or reserved for the system's own use."""


def check_token_name(name: str) -> None:
    """Refuse names that are malformed or that the system records its own actions under."""
    if TOKEN_NAME.fullmatch(name) is None:
        raise InvalidTokenName(f"{name!r}: a token name is 1-64 letters, digits, '.', '_' or '-'")
    folded = name.lower()
    if folded in RESERVED_NAMES or folded.startswith(RESERVED_PREFIXES):
        raise InvalidTokenName(f"{name!r} is reserved: orderstream records its own actions under such names")


def is_reserved(name: str) -> bool:
    try:
        check_token_name(name)
    except InvalidTokenName:
        return True
    return False


def new_token() -> str:
    return "os_" + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(db: Engine, name: str, role: str, customer_id: str | None = None, personal_data: bool = False) -> str:
    """Create a token; the returned string is the only time it is ever seen. A customer token is
    bound to its customer (and sees that customer's personal data only); another may be granted
    personal data."""
    check_token_name(name)
    if (role == "customer") != (customer_id is not None):
        raise ValueError("a customer token needs --customer-id, and only a customer token takes one")
    if customer_id is not None and not CUSTOMER_ID.fullmatch(customer_id):
        raise ValueError(f"{customer_id!r} is not a customer id (1-64 letters, digits, '.', '_', ':', '@' or '-')")
    token = new_token()
    with db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO api_tokens (name, role, token_hash, customer_id, personal_data)"
                " VALUES (:n, :r, :h, :c, :p)"
            ),
            {"n": name, "r": role, "h": hash_token(token), "c": customer_id, "p": personal_data},
        )
    return token


def list_tokens(db: Engine) -> list[dict[str, Any]]:
    with db.connect() as conn:
        rows = conn.execute(text("SELECT name, role, created_at, revoked_at FROM api_tokens ORDER BY name"))
        return [dict(r._mapping) for r in rows]


def revoke_token(db: Engine, name: str) -> bool:
    with db.begin() as conn:
        return bool(
            conn.execute(
                text("UPDATE api_tokens SET revoked_at = now() WHERE name = :n AND revoked_at IS NULL"), {"n": name}
            ).rowcount
        )


def token_is_valid(db: Engine, token: str) -> bool:
    with db.connect() as conn:
        return bool(
            conn.execute(
                text("SELECT 1 FROM api_tokens WHERE token_hash = :h AND revoked_at IS NULL"), {"h": hash_token(token)}
            ).first()
        )


def lookup(db: Engine, token: str) -> tuple[str, str, str | None, bool] | None:
    """(name, role, customer id, granted personal data) of an active token, or None."""
    with db.connect() as conn:
        row = conn.execute(
            text(
                "SELECT name, role, customer_id, personal_data FROM api_tokens"
                " WHERE token_hash = :h AND revoked_at IS NULL"
            ),
            {"h": hash_token(token)},
        ).first()
    return (row.name, row.role, row.customer_id, row.personal_data) if row is not None else None
