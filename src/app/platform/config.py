"""Settings, read once from the environment by the composition root."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


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


@dataclass(frozen=True)
class Settings:
    """Everything a process of orderstream needs to know about its surroundings."""

    database_url: str
    redis_url: str
    port: int = 8000
    key_prefix: str = "orderstream"
    stream_partitions: int = 4
    relay_batch_size: int = 500
    # After a batch of several events (they arrive faster than one per round), the relay and the
    # projectors wait this long before reading again, so the next round trip carries more of them.
    batch_linger_ms: int = 2
    consumer_batch_size: int = 500
    consumer_block_ms: int = 1000
    claim_idle_ms: int = 30_000
    # Each consumer refreshes a Redis key this often (time to live: three times as long); a consumer
    # whose key is gone is dead, and the others take over its pending entries (workers/liveness.py).
    consumer_heartbeat_ms: int = 1_000
    max_deliveries: int = 5
    retention_interval_ms: int = 2_000
    rq_queue: str = "orderstream"
    projections: tuple[str, ...] = ("order_summaries", "sales_stats")  # the groups trimming waits for
    streams_redis_url: str | None = None  # the event streams' Redis, if not REDIS_URL
    streams_cluster: bool = False  # ...and whether it is a Redis Cluster
    admin_token: str | None = None
    rate_limit: str = "1000 per second"
    auth_failure_limit: str = "20 per minute"  # failed authentications per client address
    trusted_proxies: int = 0  # reverse proxies in front whose X-Forwarded-* headers are believed
    idempotency_ttl_s: int = 86_400
    read_wait_ms: int = 2_000
    max_waiting_reads: int = 3  # min_version reads waiting at once in one web process
    max_body_bytes: int = 64 * 1024
    body_timeout_ms: int = 10_000  # a request body must arrive within this

    def __post_init__(self) -> None:
        if self.admin_token is not None:
            check_admin_token(self.admin_token)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read settings from the environment; DATABASE_URL and REDIS_URL are required."""
        env = os.environ if env is None else env
        missing = [name for name in ("DATABASE_URL", "REDIS_URL") if not env.get(name)]
        if missing:
            raise RuntimeError(
                f"{' and '.join(missing)} not set: run through `make run` / `make test`, "
                "which start the embedded PostgreSQL and Redis, or point them at your services"
            )
        return cls(
            database_url=env["DATABASE_URL"],
            redis_url=env["REDIS_URL"],
            port=int(env.get("PORT", "8000")),
            key_prefix=env.get("ORDERSTREAM_KEY_PREFIX", "orderstream"),
            stream_partitions=int(env.get("ORDERSTREAM_STREAM_PARTITIONS", "4")),
            relay_batch_size=int(env.get("ORDERSTREAM_RELAY_BATCH", "500")),
            batch_linger_ms=int(env.get("ORDERSTREAM_BATCH_LINGER_MS", "2")),
            consumer_batch_size=int(env.get("ORDERSTREAM_CONSUMER_BATCH", "500")),
            consumer_block_ms=int(env.get("ORDERSTREAM_CONSUMER_BLOCK_MS", "1000")),
            claim_idle_ms=int(env.get("ORDERSTREAM_CLAIM_IDLE_MS", "30000")),
            consumer_heartbeat_ms=int(env.get("ORDERSTREAM_CONSUMER_HEARTBEAT_MS", "1000")),
            max_deliveries=int(env.get("ORDERSTREAM_MAX_DELIVERIES", "5")),
            retention_interval_ms=int(env.get("ORDERSTREAM_RETENTION_INTERVAL_MS", "2000")),
            rq_queue=env.get("ORDERSTREAM_RQ_QUEUE", "orderstream"),
            projections=tuple(
                p.strip()
                for p in env.get("ORDERSTREAM_PROJECTIONS", "order_summaries,sales_stats").split(",")
                if p.strip()
            ),
            streams_redis_url=env.get("ORDERSTREAM_STREAMS_REDIS_URL") or None,
            streams_cluster=env.get("ORDERSTREAM_STREAMS_CLUSTER", "") in ("1", "true", "yes"),
            admin_token=env.get("ORDERSTREAM_ADMIN_TOKEN") or None,
            rate_limit=env.get("ORDERSTREAM_RATE_LIMIT", "1000 per second"),
            auth_failure_limit=env.get("ORDERSTREAM_AUTH_FAILURE_LIMIT", "20 per minute"),
            trusted_proxies=int(env.get("ORDERSTREAM_TRUSTED_PROXIES", "0")),
            idempotency_ttl_s=int(env.get("ORDERSTREAM_IDEMPOTENCY_TTL_S", "86400")),
            read_wait_ms=int(env.get("ORDERSTREAM_READ_WAIT_MS", "2000")),
            max_waiting_reads=int(
                env.get("ORDERSTREAM_MAX_WAITING_READS", str(max(0, int(env.get("WEB_THREADS", "4")) - 1)))
            ),
            max_body_bytes=int(env.get("ORDERSTREAM_MAX_BODY_BYTES", str(64 * 1024))),
            body_timeout_ms=int(env.get("ORDERSTREAM_BODY_TIMEOUT_MS", "10000")),
        )

    @property
    def sqlalchemy_url(self) -> str:
        return sqlalchemy_url(self.database_url)
