"""Looking into the Redis Streams of an environment: entries, consumer groups, consumers, pending entries."""

from __future__ import annotations

from contextlib import suppress

import redis
from redis import Redis

from app.eventlog.streams import StreamsClient, stream_keys
from tests.support.environments import Env

GROUP = "order_summaries"  # the projection's consumer group, the one the stream tests run
# Takeover tests: the idle-time fallback (XAUTOCLAIM) at 60 s cannot be what moves an entry within a test,
# and a dead consumer's entries are taken over within TAKEOVER_S: heartbeat TTL (3 s) + a look to notice
# + a look to confirm, with room; far below 60 s.
NO_IDLE_CLAIM = {"ORDERSTREAM_CLAIM_IDLE_MS": "60000"}
TAKEOVER_S = 10.0


def stream_entries(env: Env) -> list[tuple[str, dict[bytes, bytes]]]:
    """Every entry on every partition stream: (stream key, fields)."""
    out = []
    for key in stream_keys(env.settings.key_prefix, env.settings.stream_partitions):
        out += [(key, fields) for _id, fields in env.redis.xrange(key)]
    return out


def consumer_groups(client: Redis, key: str) -> list[dict[str, object]]:
    """XINFO GROUPS of a stream; none while the stream does not exist."""
    try:
        return list(client.xinfo_groups(key))
    except redis.ResponseError:  # no such key yet
        return []


def pending(env: Env, consumer: str | None = None) -> int:
    """Entries delivered to the projection's group (or one consumer of it) and not acknowledged."""
    total = 0
    for key in stream_keys(env.settings.key_prefix, env.settings.stream_partitions):
        if not any(g["name"] == GROUP.encode() for g in consumer_groups(env.redis, key)):
            continue
        if consumer is None:
            total += int(env.redis.xpending(key, GROUP)["pending"])
        else:
            total += len(env.redis.xpending_range(key, GROUP, "-", "+", 10_000, consumername=consumer))
    return total


def group_consumers(env: Env, client: StreamsClient | None = None) -> set[str]:
    """The names in the projection's group, on any partition stream."""
    names: set[str] = set()
    for key in stream_keys(env.settings.key_prefix, env.settings.stream_partitions):
        with suppress(redis.ResponseError):  # no stream or group yet
            names |= {c["name"].decode() for c in (client or env.redis).xinfo_consumers(key, GROUP)}
    return names


def read_as(env: Env, consumer: str, count: int, client: StreamsClient | None = None) -> None:
    """Deliver new entries to `consumer` (as if it had read them just before dying)."""
    for key in stream_keys(env.settings.key_prefix, env.settings.stream_partitions):  # one slot per call
        (client or env.redis).xreadgroup(GROUP, consumer, {key: ">"}, count=count)


def pending_ids(env: Env, consumer: str, client: StreamsClient | None = None) -> set[bytes]:
    """The entries delivered to `consumer` and not acknowledged, on every partition stream."""
    ids: set[bytes] = set()
    for key in stream_keys(env.settings.key_prefix, env.settings.stream_partitions):
        entries = (client or env.redis).xpending_range(key, GROUP, "-", "+", 10_000, consumername=consumer)
        ids |= {entry["message_id"] for entry in entries}
    return ids
