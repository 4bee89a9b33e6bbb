"""Redis stream naming and partitioning, shared by the relay (producer) and consumers.

Events of one order always go to the same partition, so a single stream keeps their order. Keys
differ per partition so that, on Redis Cluster, partitions spread over slots. Changing the number
of partitions re-maps orders: drain the outbox and the groups first.
"""

from __future__ import annotations

import zlib
from typing import Any

import orjson
from redis import Redis, RedisCluster

from app.eventlog.envelope import RecordedEvent
from app.platform.config import Settings

StreamsClient = Redis | RedisCluster


def streams_client(settings: Settings) -> StreamsClient:
    """The Redis that carries the event streams: REDIS_URL, or ORDERSTREAM_STREAMS_REDIS_URL, which
    may be a Redis Cluster (ORDERSTREAM_STREAMS_CLUSTER=1). rq and rate limits stay on REDIS_URL."""
    url = settings.streams_redis_url or settings.redis_url
    if settings.streams_cluster:
        return RedisCluster.from_url(url)
    return Redis.from_url(url)


def stream_keys(prefix: str, partitions: int) -> list[str]:
    """Every partition's stream key."""
    return [f"{prefix}:events:{n}" for n in range(partitions)]


def partition_of(partitions: int, stream_id: str) -> int:
    """The partition an aggregate stream's events go to (stable across processes and restarts)."""
    return zlib.crc32(stream_id.encode()) % partitions


def stream_key_for(prefix: str, partitions: int, stream_id: str) -> str:
    """The stream key an event of this aggregate stream is published to."""
    return f"{prefix}:events:{partition_of(partitions, stream_id)}"


def dead_letter_key(prefix: str) -> str:
    """The stream where consumers put the entries they gave up on."""
    return f"{prefix}:dead-letters"


def consumer_key(prefix: str, group: str, consumer: str) -> str:
    """The key a live consumer of a group keeps refreshing (its heartbeat; workers/liveness.py)."""
    return f"{prefix}:consumers:{group}:{consumer}"


EntryId = tuple[int, int]


def as_str(value: bytes | str) -> str:
    """A name or id from a Redis reply, as str (the clients do not decode; a client that does gives str)."""
    return value.decode() if isinstance(value, bytes) else value


def parse_entry_id(raw: bytes | str) -> EntryId:
    """A stream entry id such as b"1700000000000-3" as (milliseconds, sequence)."""
    ms, _, seq = as_str(raw).partition("-")
    return int(ms), int(seq or 0)


def format_entry_id(entry_id: EntryId) -> str:
    return f"{entry_id[0]}-{entry_id[1]}"


def encode_entry(event: RecordedEvent) -> dict[str, str]:
    """Stream entry fields: the whole envelope, plus a few fields for people reading with redis-cli."""
    return {
        "type": event.type,
        "stream_id": event.stream_id,
        "version": str(event.version),
        "envelope": orjson.dumps(event.to_json()).decode(),
    }


def decode_entry(fields: dict[Any, Any]) -> RecordedEvent:
    """The envelope carried by a stream entry."""
    raw = fields.get(b"envelope", fields.get("envelope"))
    if raw is None:
        raise ValueError("stream entry has no envelope field")
    return RecordedEvent.from_json(orjson.loads(raw))
