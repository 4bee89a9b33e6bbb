"""What Redis still holds of each partition stream: how far every group acknowledged, and data loss.

Used by the relay (the single leader) to trim streams and outbox rows only behind every consumer
group's acknowledged position (a slow group keeps its entries), and to notice a stream that lost
entries the relay wrote (Redis restarted empty, or failed over to a replica that missed writes).
"""

from __future__ import annotations

import time
from typing import Any

import redis

from app.eventlog.streams import EntryId, StreamsClient, parse_entry_id


def acknowledged_below(client: StreamsClient, key: str, expected: tuple[str, ...]) -> EntryId | None:
    """The entry id below which every group acknowledged everything; None if an expected group is
    missing (not created yet, or lost with Redis's data and not recreated yet): then nothing may go."""
    try:
        groups = client.xinfo_groups(key)
    except redis.ResponseError:  # no such key
        return None
    if not set(expected) <= {_text(group["name"]) for group in groups}:
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


def lost_entries(client: StreamsClient, key: str, last_published: EntryId) -> bool:
    """True if the stream is gone or its newest id is older than the newest one the relay wrote."""
    try:
        info = client.xinfo_stream(key)
    except redis.ResponseError:  # no such key
        return True
    return parse_entry_id(info["last-generated-id"]) < last_published


def stream_status(client: StreamsClient, key: str) -> dict[str, Any]:
    """What an operator wants to know about one partition stream and each group reading it."""
    try:
        info = client.xinfo_stream(key)
        groups = client.xinfo_groups(key)
    except redis.ResponseError:  # no such key yet
        return {"key": key, "length": 0, "last_entry_id": None, "groups": []}
    now_ms = time.time() * 1000
    described = []
    for group in groups:
        name = _text(group["name"])
        last = _text(group["last-delivered-id"])
        undelivered = client.xrange(key, min=f"({last}" if last != "0-0" else "-", max="+", count=10_000) or []
        pending = client.xpending(key, name) if group["pending"] else {"min": None}
        oldest = pending["min"] or (undelivered[0][0] if undelivered else None)
        consumers = client.xinfo_consumers(key, name)
        described.append(
            {
                "name": name,
                "consumers": [
                    {"name": _text(c["name"]), "pending": c["pending"], "idle_ms": c["idle"]} for c in consumers
                ],
                "pending": group["pending"],
                "last_delivered_id": last,
                "lag": group.get("lag") if group.get("lag") is not None else len(undelivered),
                "oldest_unprocessed_age_s": round(max(0.0, now_ms - parse_entry_id(oldest)[0]) / 1000, 3)
                if oldest
                else 0.0,
            }
        )
    return {
        "key": key,
        "length": info["length"],
        "last_entry_id": _text(info["last-generated-id"]),
        "groups": described,
    }


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
