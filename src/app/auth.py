"""Bearer tokens with roles: reader (GET), writer (commands too), admin (everything, /admin, /rq).

Tokens are random strings shown once at creation; only their SHA-256 is stored (they carry 256 bits
of entropy, so a slow hash would add nothing). Each request is authenticated before anything else
looks at it (its body, its parameters, its route): the answer to a stranger is 401, whatever it sent.

- Who: a `Principal`. Its `id` scopes idempotency keys and rate limits ("token:<name>" or
  "env:admin", which no token name can produce); its `name` is the actor recorded in events. Names
  the system uses itself (env-admin, anonymous, system, ...) cannot be given to tokens.
- HTTP Basic (the token as password) is accepted only by the pages people open in a browser
  (/admin, /rq). Browsers resend Basic credentials on their own, so those pages refuse every
  cross-site request (Sec-Fetch-Site, else Origin/Referer), and no state-changing request is taken
  from another site anywhere. The API takes bearer tokens, which a browser never adds by itself.
- Guessing is limited: failed attempts are counted per client address (ORDERSTREAM_AUTH_FAILURE_LIMIT),
  and past the limit the address gets 429 without a database lookup.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Response, g, request
from sqlalchemy import Engine, text

from app.config import Settings
from app.limits import RateLimits
from app.problems import problem
from app.web import UNSAFE_METHODS, engine, settings

ROLES = {"reader": 1, "writer": 2, "admin": 3}
PUBLIC_PREFIXES = ("/docs", "/openapi.json", "/static/", "/healthz", "/readyz", "/metrics")
CACHE_SECONDS = 5.0  # a revoked token stops working within this long
TOKEN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
RESERVED_NAMES = frozenset({"env-admin", "anonymous"})
RESERVED_PREFIXES = ("env-", "system", "orderstream")
SAME_SITE_FETCHES = ("same-origin", "none")  # `none`: typed, bookmarked, or opened from outside a page


@dataclass(frozen=True)
class Principal:
    id: str  # scopes idempotency keys and rate-limit buckets
    name: str  # the actor recorded in events' metadata
    role: str


ENV_ADMIN = Principal("env:admin", "env-admin", "admin")


class InvalidTokenName(ValueError):
    """A token name that is malformed or reserved for the system's own use."""


def check_token_name(name: str) -> None:
    """Refuse names that are malformed or that the system records its own actions under."""
    if TOKEN_NAME.fullmatch(name) is None:
        raise InvalidTokenName(f"{name!r}: a token name is 1-64 letters, digits, '.', '_' or '-'")
    folded = name.lower()
    if folded in RESERVED_NAMES or folded.startswith(RESERVED_PREFIXES):
        raise InvalidTokenName(f"{name!r} is reserved: orderstream records its own actions under such names")


def _is_reserved(name: str) -> bool:
    try:
        check_token_name(name)
    except InvalidTokenName:
        return True
    return False


def new_token() -> str:
    return "os_" + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(db: Engine, name: str, role: str) -> str:
    """Create a token; the returned string is the only time it is ever seen."""
    check_token_name(name)
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
    """token hash -> Principal, remembered for a few seconds to spare a query per request."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[float, Principal]] = {}
        self.lock = threading.Lock()

    def cached(self, token: str) -> Principal | None:
        with self.lock:
            hit = self.entries.get(hash_token(token))
        return hit[1] if hit and hit[0] > time.monotonic() else None

    def lookup(self, db: Engine, token: str) -> Principal | None:
        digest = hash_token(token)
        with db.connect() as conn:
            row = conn.execute(
                text("SELECT name, role FROM api_tokens WHERE token_hash = :h AND revoked_at IS NULL"), {"h": digest}
            ).first()
        if row is None or _is_reserved(row.name):  # a reserved name from before names were checked
            return None  # misses are not cached: random tokens must not be able to flush the cache
        found = Principal(f"token:{row.name}", row.name, row.role)
        with self.lock:
            if len(self.entries) > 10_000:
                self.entries.clear()
            self.entries[digest] = (time.monotonic() + CACHE_SECONDS, found)
        return found


def required_role() -> str | None:
    """The least role this request needs; None for public pages (docs, spec, health)."""
    path = request.path
    if request.method == "OPTIONS" or path == "/" or path.startswith(PUBLIC_PREFIXES):
        return None
    if path.startswith(("/admin", "/rq")):
        return "admin"
    return "reader" if request.method in ("GET", "HEAD") else "writer"


def for_browsers() -> bool:
    """Pages people open in a browser (rq-dashboard, the admin page): HTTP Basic is accepted there."""
    path = request.path
    return path == "/rq" or path.startswith("/rq/") or path.rstrip("/") == "/admin"


def cross_site() -> bool:
    """Whether the request comes from a page of another origin (another port counts).

    Browsers say so in Sec-Fetch-Site; older ones send Origin (Referer on some GETs). A request
    with none of them did not come from a page (curl, a script) and is not cross-site.
    """
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site not in SAME_SITE_FETCHES
    source = request.headers.get("Origin") or request.headers.get("Referer")
    if not source:
        return False
    parts = urlsplit(source)
    return f"{parts.scheme}://{parts.netloc}" != f"{request.scheme}://{request.host}"


def presented_token() -> tuple[str, str] | None:
    """(scheme, token) from `Authorization: Bearer <token>` or the password of HTTP Basic."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer" and value.strip():
        return scheme, value.strip()
    if scheme == "basic":
        try:
            password = base64.b64decode(value.strip(), validate=True).decode().partition(":")[2]
        except ValueError:  # not base64, or not UTF-8
            return None
        return (scheme, password) if password else None
    return None


def install_auth(app: Flask, config: Settings) -> None:
    """Refuse cross-site requests, then check every request's token and role before anything else
    runs; record the principal."""
    cache = TokenCache()
    failures = RateLimits(config, config.auth_failure_limit, "authfail")
    app.extensions["orderstream"]["auth_failures"] = failures

    @app.before_request
    def _authenticate() -> Response | None:
        if cross_site() and (for_browsers() or request.method in UNSAFE_METHODS):
            return problem(403, "cross-site requests are refused here: open this page from orderstream itself")
        role = required_role()
        if role is None:
            return None
        presented = presented_token()
        if presented is not None and presented[0] == "basic" and not for_browsers():
            return _unauthorized("HTTP Basic is accepted only by /admin and /rq; send Authorization: Bearer <token>")
        if presented is None:
            return _unauthorized("a valid bearer token is required")
        principal = _known(cache, presented[1])
        if principal is None:
            client = request.remote_addr or "unknown"
            refused = failures.exhausted(client)
            if refused is not None:
                return problem(
                    429,
                    f"too many failed authentications from this address ({refused}); try again later",
                    {"Retry-After": str(failures.seconds_until_reset(refused, client))},
                )
            principal = cache.lookup(engine(), presented[1])
            if principal is None:
                failures.hit(client)
                return _unauthorized("the token is not valid (or revoked)")
        if ROLES[principal.role] < ROLES[role]:
            return problem(403, f"the token {principal.name!r} has role {principal.role}; this needs {role}")
        g.principal = principal
        g.actor = principal.name
        return None

    @app.after_request
    def _not_framed(response: Response) -> Response:
        """Pages for people cannot be framed by another site (and clicked through unseen)."""
        if response.mimetype == "text/html":
            response.headers["X-Frame-Options"] = "DENY"
            response.headers["Content-Security-Policy"] = "frame-ancestors 'none'"
        return response


def _unauthorized(detail: str) -> Response:
    challenge = 'Basic realm="orderstream"' if for_browsers() else 'Bearer realm="orderstream"'
    return problem(401, detail, {"WWW-Authenticate": challenge})


def _known(cache: TokenCache, token: str) -> Principal | None:
    """The environment's admin token, or a token seen valid moments ago: no database, no limiter."""
    admin_token = settings().admin_token
    if admin_token and hmac.compare_digest(token.encode(), admin_token.encode()):
        return ENV_ADMIN
    return cache.cached(token)
