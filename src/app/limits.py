"""Per-token rate limits (flask-limiter), counted in Redis and shared by every web process.

Counting is the one thing the request path does in Redis. If Redis is unreachable the limiter
falls back to per-process memory, so commands keep working through a Redis outage.
"""

from __future__ import annotations

import math
import time

from flask import Flask, current_app, g
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from app.config import Settings


def _who() -> str:
    actor = g.get("actor")
    return f"token:{actor}" if actor else f"ip:{get_remote_address()}"


def install_rate_limits(app: Flask, settings: Settings) -> Limiter:
    """ORDERSTREAM_RATE_LIMIT per token (e.g. "1000 per second"); 429 with Retry-After beyond it."""
    limiter = Limiter(
        key_func=_who,
        default_limits=[settings.rate_limit],
        default_limits_exempt_when=lambda: not g.get("actor"),  # public pages: docs, spec, health
        storage_uri=settings.redis_url,
        storage_options={"socket_connect_timeout": 1, "socket_timeout": 1},
        strategy="fixed-window",
        key_prefix=f"{settings.key_prefix}:ratelimit",
        # No X-RateLimit-* headers: filling them costs two more Redis round trips on every request.
        # A refused request still says when to come back (Retry-After on the 429, see app.problems).
        headers_enabled=False,
        swallow_errors=True,
        in_memory_fallback_enabled=True,
    )
    limiter.init_app(app)
    app.extensions["orderstream"]["limiter"] = limiter
    return limiter


def seconds_until_reset() -> int:
    """For a 429: when the current window of the breached limit ends."""
    limiter: Limiter = current_app.extensions["orderstream"]["limiter"]
    limit = limiter.current_limit
    return max(1, math.ceil(limit.reset_at - time.time())) if limit else 1
