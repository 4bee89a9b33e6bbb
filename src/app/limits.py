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

import redis
from flask import Flask, g
from limits import RateLimitItem, parse_many
from limits.errors import StorageError
from limits.storage import MemoryStorage, RedisStorage
from limits.strategies import FixedWindowRateLimiter
from werkzeug.exceptions import TooManyRequests

from app.config import Settings

STORAGE_ERRORS = (redis.RedisError, StorageError, OSError)
RETRY_REDIS_AFTER_S = 5.0


class RateLimits:
    """ORDERSTREAM_RATE_LIMIT per token (e.g. "1000 per second"); the first breached limit refuses."""

    def __init__(self, settings: Settings) -> None:
        self.items: list[RateLimitItem] = parse_many(settings.rate_limit)
        storage = RedisStorage(
            settings.redis_url,
            key_prefix=f"{settings.key_prefix}:ratelimit",
            socket_connect_timeout=1,
            socket_timeout=1,
        )
        self.shared = FixedWindowRateLimiter(storage)
        self.local = FixedWindowRateLimiter(MemoryStorage())
        self.redis_down_until = 0.0  # monotonic time before which counting stays in memory

    def breached(self, who: str) -> RateLimitItem | None:
        """Count one request for `who`; the limit it goes over, if any."""
        for item in self.items:
            if not self._hit(item, who):
                return item
        return None

    def _hit(self, item: RateLimitItem, who: str) -> bool:
        if time.monotonic() >= self.redis_down_until:
            try:
                return self.shared.hit(item, who)
            except STORAGE_ERRORS:
                self.redis_down_until = time.monotonic() + RETRY_REDIS_AFTER_S
        return self.local.hit(item, who)

    def seconds_until_reset(self, item: RateLimitItem, who: str) -> int:
        """When the window of a breached limit ends (for Retry-After)."""
        try:
            if time.monotonic() < self.redis_down_until:
                raise StorageError(ConnectionError("Redis was unreachable moments ago"))
            reset = self.shared.get_window_stats(item, who).reset_time
        except STORAGE_ERRORS:
            reset = self.local.get_window_stats(item, who).reset_time
        return max(1, math.ceil(reset - time.time()))


def install_rate_limits(app: Flask, settings: Settings) -> RateLimits:
    """Count every authenticated request against its token's limits (after auth has named the actor)."""
    limits = RateLimits(settings)

    @app.before_request
    def _count() -> None:
        actor = g.get("actor")
        if not actor:  # public pages: docs, spec, health
            return
        who = f"token:{actor}"
        item = limits.breached(who)
        if item is not None:
            raise TooManyRequests(
                f"rate limit of {item} exceeded for this token",
                retry_after=limits.seconds_until_reset(item, who),
            )

    app.extensions["orderstream"]["limits"] = limits
    return limits
