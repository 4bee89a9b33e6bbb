"""Per-token rate limits, counted in Redis and shared by every web process.

The counting is the `limits` library (the engine under flask-limiter), called directly: one
fixed-window INCR per request and nothing else, where flask-limiter's per-request resolution of
decorators, exemptions and headers cost about as much CPU again as the command itself.
If Redis is unreachable, counting falls back to per-process memory, so commands keep working
through a Redis outage (the limit is then enforced per process until Redis is back). After a
failure, Redis is left alone for a few seconds: a Redis that hangs rather than refuses would
otherwise cost every request its socket timeout.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from flask import Flask, g
from limits import RateLimitItem, parse_many
from limits.errors import StorageError
from limits.storage import MemoryStorage, RedisStorage
from limits.strategies import FixedWindowRateLimiter
from werkzeug.exceptions import TooManyRequests

from app.platform.config import Settings

T = TypeVar("T")
STORAGE_ERRORS = (redis.RedisError, StorageError, OSError)
RETRY_REDIS_AFTER_S = 5.0


class RateLimits:
    """Limits in the `limits` syntax (e.g. "1000 per second") counted per key; the first one
    breached refuses. `namespace` keeps independent counts apart (requests, failed logins)."""

    def __init__(self, settings: Settings, limits: str, namespace: str) -> None:
        self.items: list[RateLimitItem] = parse_many(limits)
        storage = RedisStorage(
            settings.redis_url,
            key_prefix=f"{settings.key_prefix}:{namespace}",
            socket_connect_timeout=1,
            socket_timeout=1,
        )
        self.shared = FixedWindowRateLimiter(storage)
        self.local = FixedWindowRateLimiter(MemoryStorage())
        self.redis_down_until = 0.0  # monotonic time before which counting stays in memory

    def breached(self, who: str) -> RateLimitItem | None:
        """Count one request for `who`; the limit it goes over, if any."""
        return next((item for item in self.items if not self._ask(FixedWindowRateLimiter.hit, item, who)), None)

    def exhausted(self, who: str) -> RateLimitItem | None:
        """A limit `who` has used up already, counting nothing."""
        return next((item for item in self.items if not self._ask(FixedWindowRateLimiter.test, item, who)), None)

    def hit(self, who: str) -> None:
        """Count one against every limit."""
        for item in self.items:
            self._ask(FixedWindowRateLimiter.hit, item, who)

    def seconds_until_reset(self, item: RateLimitItem, who: str) -> int:
        """When the window of a breached limit ends (for Retry-After)."""
        reset = self._ask(FixedWindowRateLimiter.get_window_stats, item, who).reset_time
        return max(1, math.ceil(reset - time.time()))

    def _ask(self, question: Callable[..., T], *args: Any) -> T:
        """Ask the shared counters in Redis, or this process's own while Redis is failing."""
        if time.monotonic() >= self.redis_down_until:
            try:
                return question(self.shared, *args)
            except STORAGE_ERRORS:
                self.redis_down_until = time.monotonic() + RETRY_REDIS_AFTER_S
        return question(self.local, *args)


def install_rate_limits(app: Flask, settings: Settings) -> RateLimits:
    """Count every authenticated request against its principal's limits (after auth named it)."""
    limits = RateLimits(settings, settings.rate_limit, "ratelimit")

    @app.before_request
    def _count() -> None:
        principal = g.get("principal")
        if principal is None:  # public pages: docs, spec, health
            return
        who = principal.id
        item = limits.breached(who)
        if item is not None:
            raise TooManyRequests(
                f"rate limit of {item} exceeded for this token",
                retry_after=limits.seconds_until_reset(item, who),
            )

    app.extensions["orderstream"]["limits"] = limits
    return limits
