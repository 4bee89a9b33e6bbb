"""What Redis still holds of each partition stream: how far every group acknowledged, and data loss.

Used by the upkeep (workers/upkeep.py) to trim streams and outbox rows only behind every consumer
group's acknowledged position (a slow group keeps its entries); by the relay to notice a stream that
lost entries it wrote (Redis restarted empty, or failed over to a replica that missed writes), and
to append only to a stream that lost nothing; by the admin API and the lag gauges to describe it.
"""

from __future__ import annotations

import time
from typing import Any

import redis
from redis.client import Pipeline

from app.eventlog.streams import EntryId, StreamsClient, as_str, format_entry_id, parse_entry_id

# Append a batch's entries to one partition stream, unless the stream has lost entries we wrote
# (ARGV[1], the newest id we recorded, or '' if none): then add nothing and answer {'lost'}.
# Check and append are one atomic step, so the evidence of a loss (the stream's last generated id
# behind ours) survives until the relay has queued the lost events again in PostgreSQL; appending
# first would hide it behind new ids. ARGV[2] is the number of fields per entry, then the entries.
APPEND_UNLESS_LOST = """
local expected = ARGV[1]
if expected ~= '' then
    local info = redis.pcall('XINFO', 'STREAM', KEYS[1])
    local last = nil
    if type(info) == 'table' and not info['err'] then
        for i = 1, #info, 2 do
            if info[i] == 'last-generated-id' then last = info[i + 1] end
        end
    end
    if last == nil then return {'lost'} end
    local lms, lseq = string.match(last, '(%d+)-(%d+)')
    local ems, eseq = string.match(expected, '(%d+)-(%d+)')
    lms, lseq, ems, eseq = tonumber(lms), tonumber(lseq), tonumber(ems), tonumber(eseq)
    if lms < ems or (lms == ems and lseq < eseq) then return {'lost'} end
end
local width = tonumber(ARGV[2])
local ids = {}
for i = 3, #ARGV, width do
    ids[#ids + 1] = redis.call('XADD', KEYS[1], '*', unpack(ARGV, i, i + width - 1))
end
return ids
"""


def append_unless_lost(pipe: Pipeline, key: str, expected: EntryId | None,
                       entries: list[dict[str, str]]) -> None:  # fmt: skip
    """Queue on `pipe` the atomic append of `entries` to `key`, unless the stream lost `expected` (the
    newest id written there, None if not known). Its reply: the new entry ids, or one b"lost"."""
    flat = [part for entry in entries for field in entry.items() for part in field]
    pipe.eval(APPEND_UNLESS_LOST, 1, key, format_entry_id(expected) if expected else "", 2 * len(entries[0]), *flat)


def found_lost(reply: list[Any]) -> bool:
    """Whether an append_unless_lost reply says the stream lost entries (nothing was appended)."""
    return bool(reply) and reply[0] in (b"lost", "lost")


def acknowledged_below(client: StreamsClient, key: str, expected: tuple[str, ...]) -> EntryId | None:
    """The entry id below which every group acknowledged everything; None if an expected group is
    missing (not created yet, or lost with Redis's data and not recreated yet): then nothing may go."""
    try:
        groups = client.xinfo_groups(key)
    except redis.ResponseError:  # no such key
        return None
    if not set(expected) <= {as_str(group["name"]) for group in groups}:
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
        name = as_str(group["name"])
        last = as_str(group["last-delivered-id"])
        undelivered = client.xrange(key, min=f"({last}" if last != "0-0" else "-", max="+", count=10_000) or []
        pending = client.xpending(key, name) if group["pending"] else {"min": None}
        oldest = pending["min"] or (undelivered[0][0] if undelivered else None)
        consumers = client.xinfo_consumers(key, name)
        described.append(
            {
                "name": name,
                "consumers": [
                    {"name": as_str(c["name"]), "pending": c["pending"], "idle_ms": c["idle"]} for c in consumers
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
        "last_entry_id": as_str(info["last-generated-id"]),
        "groups": described,
    }
