"""Who is asking: bearer tokens with roles (reader: reads; writer: commands too; admin: everything,
/admin and /rq), checked before anything else looks at a request.

- Every request to a route that is not public is authenticated first (after the cross-site rule of
  app/platform/browsers.py): a stranger gets 401 whatever its route, method, parameters or body.
- A `Principal` is who a token is. Its `id` scopes idempotency keys and rate limits ("token:<name>",
  or "env:admin" for ORDERSTREAM_ADMIN_TOKEN, which no token name can produce); its `name` is the
  actor recorded in events.
- HTTP Basic (the token as password) only on the pages people browse (app/platform/browsers.py).
- Guessing is limited: failed attempts are counted per client address (ORDERSTREAM_AUTH_FAILURE_LIMIT;
  an IPv6 client by its /64, which one holder can fill), and past the limit the address gets 429
  without a database lookup. A token seen valid moments ago is known without asking.
"""

from __future__ import annotations

import base64
import hmac
import ipaddress
import threading
import time
from dataclasses import dataclass

from flask import Flask, Response, g, request
from sqlalchemy import Engine

from app.platform import tokens
from app.platform.browsers import for_browsers
from app.platform.config import Settings
from app.platform.limits import RateLimits
from app.platform.problems import problem
from app.platform.web import engine, settings

ROLES = {"customer": 0, "reader": 1, "writer": 2, "admin": 3}
# What a customer token may do, each only on what is its own (the views check the owner): place
# orders as its customer; read its orders, their events and history, its stats; export and erase its
# personal data. Any other route answers 404, as an order of another customer does: nothing to probe.
CUSTOMER_ROUTES = {
    ("POST", "/orders"),
    ("GET", "/orders"),
    ("GET", "/orders/<uuid:order_id>"),
    ("GET", "/orders/<uuid:order_id>/events"),
    ("GET", "/orders/<uuid:order_id>/history"),
    ("GET", "/customers/<string:customer_id>/stats"),
    ("GET", "/customers/<string:customer_id>/personal-data"),
    ("DELETE", "/customers/<string:customer_id>/personal-data"),
}
PUBLIC_PREFIXES = ("/docs", "/openapi.json", "/asyncapi.json", "/static/", "/healthz", "/readyz", "/metrics")
CACHE_SECONDS = 5.0  # a revoked token stops working within this long


@dataclass(frozen=True)
class Principal:
    id: str  # scopes idempotency keys and rate-limit buckets
    name: str  # the actor recorded in events' metadata
    role: str
    customer_id: str | None = None  # a customer token's customer: all it may see or do is its own
    personal_data: bool = False  # granted to see personal data (an admin always is)

    def may_see_personal_data_of(self, customer_id: str) -> bool:
        return self.role == "admin" or self.personal_data or self.customer_id == customer_id

    def owns(self, customer_id: str) -> bool:
        """Whether this caller may see what belongs to the customer (everyone but another customer)."""
        return self.role != "customer" or self.customer_id == customer_id


ENV_ADMIN = Principal("env:admin", "env-admin", "admin")


class TokenCache:
    """token hash -> Principal, remembered for a few seconds to spare a query per request."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[float, Principal]] = {}
        self.lock = threading.Lock()

    def cached(self, token: str) -> Principal | None:
        with self.lock:
            hit = self.entries.get(tokens.hash_token(token))
        return hit[1] if hit and hit[0] > time.monotonic() else None

    def lookup(self, db: Engine, token: str) -> Principal | None:
        found = tokens.lookup(db, token)
        if found is None or tokens.is_reserved(found[0]):  # a reserved name from before names were checked
            return None  # misses are not cached: random tokens must not be able to flush the cache
        principal = Principal(f"token:{found[0]}", *found)
        with self.lock:
            if len(self.entries) > 10_000:
                self.entries.clear()
            self.entries[tokens.hash_token(token)] = (time.monotonic() + CACHE_SECONDS, principal)
        return principal


def required_role() -> str | None:
    """The least role this request needs; None for public pages (docs, spec, health)."""
    path = request.path
    if path == "/" or path.startswith(PUBLIC_PREFIXES):
        return None
    if path.startswith(("/admin", "/rq")):
        return "admin"
    return "reader" if request.method in ("GET", "HEAD", "OPTIONS") else "writer"


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


def client_address() -> str:
    """Where failed attempts are counted: the client's address (an IPv6 client's /64)."""
    try:
        address = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        return request.remote_addr or "unknown"
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def install_auth(app: Flask, config: Settings) -> None:
    """Check every request's token and role before anything else runs; record the principal."""
    cache = TokenCache()
    failures = RateLimits(config, config.auth_failure_limit, "authfail")

    @app.before_request
    def _authenticate() -> Response | None:
        role = required_role()
        if role is None:
            return None
        presented = presented_token()
        if presented is not None and presented[0] == "basic" and not for_browsers():
            return _unauthorized("HTTP Basic is accepted only by the admin page and /rq; send Authorization: Bearer")
        if presented is None:
            return _unauthorized("a valid bearer token is required")
        principal = _known(cache, presented[1])
        if principal is None:
            client = client_address()
            refused = failures.exhausted(client)
            if refused is not None:
                detail = f"too many failed authentications from this address ({refused}); try again later"
                return problem(429, detail, {"Retry-After": str(failures.seconds_until_reset(refused, client))})
            principal = cache.lookup(engine(), presented[1])
            if principal is None:
                failures.hit(client)
                return _unauthorized("the token is not valid (or revoked)")
        if principal.role == "customer":
            rule = request.url_rule.rule if request.url_rule is not None else ""
            owner = (request.view_args or {}).get("customer_id", principal.customer_id)
            if (request.method, rule) not in CUSTOMER_ROUTES or owner != principal.customer_id:
                return problem(404, "not found")
        elif ROLES[principal.role] < ROLES[role]:
            return problem(403, f"the token {principal.name!r} has role {principal.role}; this needs {role}")
        g.principal = principal
        g.actor = principal.name
        return None


def _unauthorized(detail: str) -> Response:
    challenge = 'Basic realm="orderstream"' if for_browsers() else 'Bearer realm="orderstream"'
    return problem(401, detail, {"WWW-Authenticate": challenge})


def _known(cache: TokenCache, token: str) -> Principal | None:
    """The environment's admin token, or a token seen valid moments ago: no database, no limiter."""
    admin_token = settings().admin_token
    if admin_token and hmac.compare_digest(token.encode(), admin_token.encode()):
        return ENV_ADMIN
    return cache.cached(token)
