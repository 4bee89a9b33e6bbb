"""Which consumers of a group are alive: a heartbeat key each, and the takeover of a dead one's entries.

A running consumer refreshes `{prefix}:consumers:{group}:{consumer}` (app.eventlog.streams.consumer_key) every
heartbeat interval from a thread of its own, with a time to live of three intervals. The thread does
not wait for batches, so a consumer that is slow inside one (a lock, a long transaction) stays alive;
one that is killed, frozen or cut off from Redis stops refreshing, and its key expires.

A consumer trusts the absence of another's key only when Redis has been calm, as far as it can tell,
for a whole time to live (2 s at least): each of its own beats succeeded at once (none failed or was
retried) and its own key is there. A missing key then means that its consumer did not refresh it for
three intervals while Redis answered: it is dead, frozen, or cut off from Redis (and so cannot
acknowledge anything either). After a disturbance (an outage, a restart, a failover: keys may have
expired or vanished for everyone) no absence counts until Redis has been calm that long again, time
enough for every live consumer to write its key again. (A Redis that lost its data lost the groups
with it: a consumer is listed in a group again only once it has read, and it beats before it reads.)

The dead consumer's pending entries are then claimed (XCLAIM, which counts a delivery like any
redelivery) and applied, and its name is removed from the group once it holds nothing. Every consumer
of a deployment must use the same interval (ORDERSTREAM_CONSUMER_HEARTBEAT_MS).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import Any, cast

import redis

from app.eventlog.streams import StreamsClient, as_str

log = logging.getLogger(__name__)
TTL_IN_BEATS = 3  # a key outlives two missed beats
# After a disturbance, how long Redis must be calm at least, whatever the interval: a live consumer's
# client reconnects within this (redis-py's default backoff between retries is capped at 1 s).
RECONNECT_S = 2.0
WARN_EVERY_S = 30.0
# XGROUP DELCONSUMER throws away the consumer's pending entries: remove it only if it has none,
# checked in the same atomic step (it might read new entries between a check and a delete otherwise).
RETIRE_IF_IDLE = """
if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) > 0 then return 0 end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return 1
"""


class Heartbeat:
    """A daemon thread that keeps one consumer's key alive until closed."""

    def __init__(self, client: StreamsClient, key: str, interval_ms: int) -> None:
        self.client, self.key, self.interval_ms = client, key, interval_ms
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"heartbeat {key}", daemon=True)
        self.warned_at = 0.0
        self.disturbed_at = time.monotonic()  # no history yet: as wary as just after an outage

    def beat(self) -> None:
        """Refresh the key now; raises what Redis raises. Its value is the time of the beat (ms).
        A beat that fails, or takes long (redis-py retries a lost connection with backoff), means
        Redis is disturbed."""
        started = time.monotonic()
        try:
            self.client.set(self.key, int(time.time() * 1000), px=TTL_IN_BEATS * self.interval_ms)
        except Exception:
            self.disturbed()
            raise
        if time.monotonic() - started > self.interval_ms / 4000:
            self.disturbed()

    def disturbed(self) -> None:
        """Note that Redis failed or lost keys just now."""
        self.disturbed_at = time.monotonic()

    def calm(self) -> bool:
        """No disturbance for a whole time to live: every live consumer has refreshed its key since."""
        return time.monotonic() - self.disturbed_at >= max(TTL_IN_BEATS * self.interval_ms / 1000, RECONNECT_S)

    def start(self) -> None:
        self.thread.start()

    def close(self) -> bool:
        """Stop beating and delete the key (after a clean stop nobody waits for it to expire);
        False if Redis could not be told."""
        self.closed.set()
        self.thread.join(5)
        try:
            self.client.delete(self.key)
        except redis.RedisError:
            return False
        return True

    def _run(self) -> None:
        wait = self.interval_ms / 1000
        while not self.closed.wait(wait):
            try:
                self.beat()
                wait = self.interval_ms / 1000
            except Exception as exc:  # retried soon: back within a fraction of the others' patience
                wait = self.interval_ms / 4000
                if time.monotonic() - self.warned_at > WARN_EVERY_S:
                    self.warned_at = time.monotonic()
                    log.warning("heartbeat %s failed (%r); retrying", self.key, exc)


def dead(own: Heartbeat, heartbeat_keys: Iterable[str]) -> set[str]:
    """Of these heartbeat keys, those whose consumers are dead, as `own` can tell (none unless Redis
    has been calm)."""
    keys = sorted(set(heartbeat_keys) - {own.key})
    if not keys or not own.calm():
        return set()
    pipe = own.client.pipeline(transaction=False)
    for key in [own.key, *keys]:
        pipe.exists(key)
    own_found, *found = pipe.execute()
    if not own_found:  # refreshed every beat, yet gone: Redis lost keys
        own.disturbed()
    if not own.calm():  # (or anything else happened meanwhile)
        return set()
    return {key for key, n in zip(keys, found, strict=True) if not n}


def consumers(client: StreamsClient, keys: list[str], group: str) -> dict[str, dict[str, int]]:
    """Each stream's consumers in the group, with how many entries each holds pending (one round trip).
    A stream Redis lost has none; a missing group raises NOGROUP (the runner creates it again)."""
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.xinfo_consumers(key, group)
    listed = {}
    for key, found in zip(keys, pipe.execute(raise_on_error=False), strict=True):
        if isinstance(found, redis.ResponseError) and "no such key" in str(found).lower():
            found = []
        elif isinstance(found, Exception):
            raise found
        listed[key] = {as_str(c["name"]): int(c["pending"]) for c in found}
    return listed


def claim(
    client: StreamsClient, key: str, group: str, dead: str, me: str, count: int, min_idle_ms: int
) -> list[tuple[Any, Any]]:
    """Up to `count` of a dead consumer's pending entries on one stream, claimed for `me`: (id, fields).

    The idle guard leaves alone an entry that someone delivered or claimed within `min_idle_ms`
    (another consumer that saw the same death and was faster, or the consumer itself, alive after all)."""
    pending = client.xpending_range(key, group, min="-", max="+", count=count, consumername=dead)
    if not pending:
        return []
    ids: list[Any] = [entry["message_id"] for entry in pending]
    claimed = cast(list[tuple[Any, Any]], client.xclaim(key, group, me, min_idle_ms, ids))  # not justid
    # Redis 6.2 answers nil for an entry deleted from the stream meanwhile (7 drops it from the PEL).
    return [(entry_id, fields) for entry_id, fields in claimed if entry_id is not None]


def retire(client: StreamsClient, key: str, group: str, consumer: str) -> bool:
    """Remove a consumer from the group if (atomically) it holds no pending entry; True if removed."""
    return bool(client.eval(RETIRE_IF_IDLE, 1, key, group, consumer))
