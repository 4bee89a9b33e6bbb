"""Bearer tokens with roles: reader (GET), writer (commands too), admin (everything, /admin, /rq).

Tokens are random strings shown once at creation; only their SHA-256 is stored (they carry 256 bits
of entropy, so a slow hash would add nothing). The name of the token is the actor recorded in each
event's metadata. An admin token can also come from ORDERSTREAM_ADMIN_TOKEN, checked in memory.
For browsers (rq-dashboard), HTTP Basic with the token as the password works too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from typing import Any

from flask import Flask, Response, g, request
from sqlalchemy import Engine, text

from app.problems import problem
from app.web import engine, settings

ROLES = {"reader": 1, "writer": 2, "admin": 3}
PUBLIC_PREFIXES = ("/docs", "/openapi.json", "/static/", "/healthz", "/readyz", "/metrics")
CACHE_SECONDS = 5.0  # a revoked token stops working within this long


def new_token() -> str:
    return "os_" + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(db: Engine, name: str, role: str) -> str:
    """Create a token; the returned string is the only time it is ever seen."""
    token = new_token()
    with db.begin() as conn:
        conn.execute(
            text("INSERT INTO api_tokens (name, role, token_hash) VALUES (:n, :r, :h)"),
            {"n": name, "r": role, "h": hash_token(token)},
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


class TokenCache:
    """token hash -> (name, role), remembered for a few seconds to spare a query per request."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[float, tuple[str, str]]] = {}
        self.lock = threading.Lock()

    def lookup(self, db: Engine, token: str) -> tuple[str, str] | None:
        digest = hash_token(token)
        now = time.monotonic()
        with self.lock:
            hit = self.entries.get(digest)
        if hit and hit[0] > now:
            return hit[1]
        with db.connect() as conn:
            row = conn.execute(
                text("SELECT name, role FROM api_tokens WHERE token_hash = :h AND revoked_at IS NULL"), {"h": digest}
            ).first()
        if row is None:
            return None  # misses are not cached: random tokens must not be able to flush the cache
        found = (row.name, row.role)
        with self.lock:
            if len(self.entries) > 10_000:
                self.entries.clear()
            self.entries[digest] = (now + CACHE_SECONDS, found)
        return found


def required_role() -> str | None:
    """The least role this request needs; None for public pages (docs, spec, health)."""
    path = request.path
    if request.method == "OPTIONS" or path == "/" or path.startswith(PUBLIC_PREFIXES):
        return None
    if path.startswith(("/admin", "/rq")):
        return "admin"
    return "reader" if request.method in ("GET", "HEAD") else "writer"


def presented_token() -> str | None:
    """The token from `Authorization: Bearer <token>`, or the password of HTTP Basic."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if scheme.lower() == "basic":
        try:
            return base64.b64decode(value, validate=True).decode().partition(":")[2] or None
        except ValueError:
            return None
    return None


def install_auth(app: Flask) -> None:
    """Check every request's token and role before anything else runs; record the actor."""
    cache = TokenCache()

    @app.before_request
    def _authenticate() -> Response | None:
        role = required_role()
        if role is None:
            return None
        token = presented_token()
        identity = _identify(cache, token) if token else None
        if identity is None:
            challenge = 'Basic realm="orderstream"' if _for_browsers() else 'Bearer realm="orderstream"'
            detail = "a valid bearer token is required" if token is None else "the token is not valid (or revoked)"
            return problem(401, detail, {"WWW-Authenticate": challenge})
        name, granted = identity
        if ROLES[granted] < ROLES[role]:
            return problem(403, f"the token {name!r} has role {granted}; this needs {role}")
        g.actor = name
        return None


def _for_browsers() -> bool:
    """Pages people open in a browser (rq-dashboard, the admin page) ask for HTTP Basic."""
    return request.path.startswith("/rq") or request.path.rstrip("/") == "/admin"


def _identify(cache: TokenCache, token: str) -> tuple[str, str] | None:
    admin_token = settings().admin_token
    if admin_token and hmac.compare_digest(token.encode(), admin_token.encode()):
        return "env-admin", "admin"
    return cache.lookup(engine(), token)
