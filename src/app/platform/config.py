"""Settings, read once from the environment by the composition root."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def sqlalchemy_url(database_url: str) -> str:
    """Turn a plain postgresql:// URL into one that names the psycopg 3 driver."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if database_url.startswith(prefix):
            return "postgresql+psycopg://" + database_url[len(prefix) :]
    raise ValueError(f"DATABASE_URL must be a postgresql:// URL, got {database_url!r}")


# The checkout: Procfile, alembic.ini, migrations/, .data/. Installed editable (make's .venv), the source tree;
# installed with `pip install .`, the package has no way back to it, and the service runs from its release
# directory (where gunicorn finds wsgi.py and gunicorn.conf.py): the working directory.
_SOURCE = Path(__file__).resolve().parents[3]
REPO = _SOURCE if (_SOURCE / "alembic.ini").is_file() else Path.cwd()
MIN_ADMIN_TOKEN_LENGTH = 32
# zxcvbn's estimate of the guesses an attacker needs, as a power of ten: random tokens of 32
# characters or more score 28 and up; repetitions, sequences and words score far less.
MIN_ADMIN_TOKEN_GUESSES_LOG10 = 20


class InsecureAdminToken(ValueError):
    """ORDERSTREAM_ADMIN_TOKEN is too short or too predictable to be a secret."""


@cache  # (settings are read by every rq job: the estimate takes some 20 ms, and a token's never changes)
def check_admin_token(token: str) -> None:
    """An admin token from the environment must be long and unpredictable (zxcvbn, Dropbox's
    estimator of how many guesses a secret takes, which sees repeats, sequences and words)."""
    from zxcvbn import zxcvbn

    advice = "Make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
    if len(token) < MIN_ADMIN_TOKEN_LENGTH:
        raise InsecureAdminToken(
            f"ORDERSTREAM_ADMIN_TOKEN is {len(token)} characters: an admin token needs at least "
            f"{MIN_ADMIN_TOKEN_LENGTH} characters to be secret. {advice}"
        )
    guesses = zxcvbn(token[:100])["guesses_log10"]  # (zxcvbn's time grows with the length)
    if guesses < MIN_ADMIN_TOKEN_GUESSES_LOG10:
        raise InsecureAdminToken(
            f"ORDERSTREAM_ADMIN_TOKEN is predictable (about 10^{guesses:.0f} guesses; at least "
            f"10^{MIN_ADMIN_TOKEN_GUESSES_LOG10} are needed): repeats, sequences or words. {advice}"
        )


def setting(
    variable: str, default: T, parse: Callable[[str], T], unset: Callable[[Mapping[str, str]], T] | None = None
) -> T:
    """One setting, declared once: the environment variable it is read from, its default, and how its
    text is parsed; `unset` computes the value from other variables when this one is not set."""
    return field(default=default, metadata=read_from(variable, parse, unset))


def read_from(
    variable: str, parse: Callable[[str], Any] = str, unset: Callable[[Mapping[str, str]], Any] | None = None
) -> dict[str, Any]:
    """Where from_env finds a field (a field without a default is required: its variable must be set)."""
    return {"variable": variable, "parse": parse, "unset": unset}


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _seconds(text: str) -> tuple[float, ...]:
    steps = tuple(float(step) for step in _names(text))
    if not steps or any(step <= 0 for step in steps):
        raise ValueError(f"expected a comma-separated list of positive seconds, got {text!r}")
    return steps


def _optional(text: str) -> str | None:
    return text or None


def _flag(text: str) -> bool:
    return text in ("1", "true", "yes")


def _web_threads_but_one(env: Mapping[str, str]) -> int:
    """One thread of each web process never waits, so reads that need no waiting are still served."""
    return max(0, int(env.get("WEB_THREADS", "4")) - 1)


@dataclass(frozen=True)
class Settings:
    """Everything a process of orderstream needs to know about its surroundings. Each field names its
    environment variable (README's configuration table lists them all; a test keeps it so)."""

    database_url: str = field(metadata=read_from("DATABASE_URL"))
    redis_url: str = field(metadata=read_from("REDIS_URL"))
    port: int = setting("PORT", 8000, int)
    key_prefix: str = setting("ORDERSTREAM_KEY_PREFIX", "orderstream", str)
    stream_partitions: int = setting("ORDERSTREAM_STREAM_PARTITIONS", 4, int)
    relay_batch_size: int = setting("ORDERSTREAM_RELAY_BATCH", 500, int)
    # After a batch of several events (they arrive faster than one per round), the relay and the
    # projectors wait this long before reading again, so the next round trip carries more of them.
    batch_linger_ms: int = setting("ORDERSTREAM_BATCH_LINGER_MS", 2, int)
    consumer_batch_size: int = setting("ORDERSTREAM_CONSUMER_BATCH", 500, int)
    consumer_block_ms: int = setting("ORDERSTREAM_CONSUMER_BLOCK_MS", 1000, int)
    claim_idle_ms: int = setting("ORDERSTREAM_CLAIM_IDLE_MS", 30_000, int)
    # Each consumer refreshes a Redis key this often (time to live: three times as long); a consumer
    # whose key is gone is dead, and the others take over its pending entries (workers/liveness.py).
    consumer_heartbeat_ms: int = setting("ORDERSTREAM_CONSUMER_HEARTBEAT_MS", 1_000, int)
    max_deliveries: int = setting("ORDERSTREAM_MAX_DELIVERIES", 5, int)
    retention_interval_ms: int = setting("ORDERSTREAM_RETENTION_INTERVAL_MS", 2_000, int)
    rq_queue: str = setting("ORDERSTREAM_RQ_QUEUE", "orderstream", str)
    # The groups trimming waits for. Empty: every registered consumer group (workers.consumers, which
    # this kernel module may not import; the upkeep job, which may, resolves it).
    projections: tuple[str, ...] = setting("ORDERSTREAM_PROJECTIONS", (), _names)
    streams_redis_url: str | None = setting("ORDERSTREAM_STREAMS_REDIS_URL", None, _optional)  # else REDIS_URL
    streams_cluster: bool = setting("ORDERSTREAM_STREAMS_CLUSTER", False, _flag)  # ...and is it a Redis Cluster
    admin_token: str | None = setting("ORDERSTREAM_ADMIN_TOKEN", None, _optional)
    rate_limit: str = setting("ORDERSTREAM_RATE_LIMIT", "1000 per second", str)
    # failed authentications per client address
    auth_failure_limit: str = setting("ORDERSTREAM_AUTH_FAILURE_LIMIT", "20 per minute", str)
    # reverse proxies in front whose X-Forwarded-* headers are believed
    trusted_proxies: int = setting("ORDERSTREAM_TRUSTED_PROXIES", 0, int)
    idempotency_ttl_s: int = setting("ORDERSTREAM_IDEMPOTENCY_TTL_S", 86_400, int)
    read_wait_ms: int = setting("ORDERSTREAM_READ_WAIT_MS", 2_000, int)
    # min_version reads waiting at once in one web process
    max_waiting_reads: int = setting(
        "ORDERSTREAM_MAX_WAITING_READS", _web_threads_but_one({}), int, unset=_web_threads_but_one
    )
    max_body_bytes: int = setting("ORDERSTREAM_MAX_BODY_BYTES", 64 * 1024, int)
    body_timeout_ms: int = setting("ORDERSTREAM_BODY_TIMEOUT_MS", 10_000, int)  # a request body must arrive within this
    # a SKU's state is snapshotted each time its stream crosses a multiple of this many events
    snapshot_every: int = setting("ORDERSTREAM_SNAPSHOT_EVERY", 100, int)
    # an order not paid this long after it was placed is cancelled by the fulfilment process manager
    payment_timeout_s: float = setting("ORDERSTREAM_PAYMENT_TIMEOUT_S", 900.0, float)
    # wraps every customer's data key (32 random bytes, url-safe base64); the web refuses to start
    # without it (`make run` makes a development one in .data/); after a rotation, the old ones
    # stay in ORDERSTREAM_PREVIOUS_MASTER_KEYS until `orderstream keys rotate` has re-wrapped every key
    master_key: str | None = setting("ORDERSTREAM_MASTER_KEY", None, _optional)
    previous_master_keys: tuple[str, ...] = setting("ORDERSTREAM_PREVIOUS_MASTER_KEYS", (), _names)
    # webhooks may go to loopback and private addresses (development, tests); never link-local
    webhooks_allow_private: bool = setting("ORDERSTREAM_WEBHOOKS_ALLOW_PRIVATE", False, _flag)
    # seconds before each retry of a webhook delivery (5xx, 429, network errors): one attempt more
    # than there are steps, about 27 hours in all by default; then the delivery is failed
    webhooks_backoff_s: tuple[float, ...] = setting(
        "ORDERSTREAM_WEBHOOKS_BACKOFF_S", (5, 30, 120, 600, 1800, 3600, 7200, 14400, 28800, 43200), _seconds
    )
    # an endpoint whose deliveries have failed this long without one success is disabled
    webhooks_disable_after_s: float = setting("ORDERSTREAM_WEBHOOKS_DISABLE_AFTER_S", 86_400.0, float)
    # a delivery handed to rq whose job has not reported in this long (its worker died) is sent again
    webhooks_lease_s: float = setting("ORDERSTREAM_WEBHOOKS_LEASE_S", 60.0, float)
    # delivered and failed deliveries are kept this long (the deliveries endpoint, redelivery), then purged
    webhooks_keep_s: float = setting("ORDERSTREAM_WEBHOOKS_KEEP_S", 604_800.0, float)

    def __post_init__(self) -> None:
        if self.admin_token is not None:
            check_admin_token(self.admin_token)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read settings from the environment; DATABASE_URL and REDIS_URL are required."""
        env = os.environ if env is None else env
        declared = [(f.name, f.metadata, f.default is MISSING) for f in fields(cls)]
        missing = [meta["variable"] for _, meta, needed in declared if needed and not env.get(meta["variable"])]
        if missing:
            raise RuntimeError(
                f"{' and '.join(missing)} not set: run through `make run` / `make test`, "
                "which start the embedded PostgreSQL and Redis, or point them at your services"
            )
        values: dict[str, Any] = {}
        for name, meta, _ in declared:
            if meta["variable"] in env:
                values[name] = meta["parse"](env[meta["variable"]])
            elif meta["unset"] is not None:
                values[name] = meta["unset"](env)
        return cls(**values)

    @property
    def sqlalchemy_url(self) -> str:
        return sqlalchemy_url(self.database_url)
