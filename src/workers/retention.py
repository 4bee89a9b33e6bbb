"""What Redis still holds of each partition stream: how far every group acknowledged, and data loss.

Used by the relay (the single leader) to trim streams and outbox rows only behind every consumer
group's acknowledged position (a slow group keeps its entries), and to notice a stream that lost
entries the relay wrote (Redis restarted empty, or failed over to a replica that missed writes).
"""

from __future__ import annotations

import redis
from redis import Redis

from app.streams import EntryId, parse_entry_id


def acknowledged_below(client: Redis, key: str) -> EntryId | None:
    """The entry id below which every group acknowledged everything; None if no group reads the stream."""
    try:
        groups = client.xinfo_groups(key)
    except redis.ResponseError:  # no such key
        return None
    bounds = []
    for group in groups:
        # The oldest pending entry, if any: the count in XINFO may be stale by the time we ask.
        oldest = client.xpending(key, group["name"])["min"] if group["pending"] else None
        if oldest is not None:
            bounds.append(parse_entry_id(oldest))
        else:
            ms, seq = parse_entry_id(group["last-delivered-id"])
            bounds.append((ms, seq + 1))
    return min(bounds, default=None)


def lost_entries(client: Redis, key: str, last_published: EntryId) -> bool:
    """True if the stream is gone or its newest id is older than the newest one the relay wrote."""
    try:
        info = client.xinfo_stream(key)
    except redis.ResponseError:  # no such key
        return True
    return parse_entry_id(info["last-generated-id"]) < last_published
