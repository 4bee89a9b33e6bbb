"""Entries other consumers of the group left behind, taken over and applied by this one.

- A consumer whose heartbeat key expired (workers/liveness.py: killed, frozen, cut off) is dead: its
  pending entries are claimed and applied within seconds, and its name is removed from the group once
  it holds nothing. A consumer that is merely slow keeps its key, and its entries.
- As a fallback, any entry pending longer than `claim_idle_ms` is claimed (XAUTOCLAIM): a dead
  consumer's that no heartbeat told of, or a failing entry's next delivery (that is its backoff).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from typing import Any

import redis

from app.eventlog.streams import StreamsClient, consumer_key
from app.platform.config import Settings
from app.platform.metrics import ENTRIES_TAKEN_OVER
from workers import liveness

log = logging.getLogger(__name__)
Process = Callable[[Any], int]  # applies and acknowledges a reply's entries; returns how many it acknowledged


class Takeover:
    """One consumer's duty towards the entries the group's other consumers left behind."""

    def __init__(
        self,
        settings: Settings,
        client: StreamsClient,
        keys: list[str],
        group: str,
        consumer: str,
        heartbeat: liveness.Heartbeat,
        stop: threading.Event,
    ) -> None:
        self.settings, self.redis, self.keys, self.group, self.consumer = settings, client, keys, group, consumer
        self.heartbeat, self.stop = heartbeat, stop
        self.claim_from = dict.fromkeys(keys, "0-0")
        self.next_claim = time.monotonic() + settings.claim_idle_ms / 1000
        self.next_takeover = 0.0

    def take_over_dead(self, process: Process) -> int:
        """Claim and apply the pending entries of the group's consumers whose heartbeat stopped, and
        remove those from the group once they hold nothing; returns how many entries it acknowledged."""
        self.next_takeover = time.monotonic() + self.settings.consumer_heartbeat_ms / 2000
        listed = liveness.consumers(self.redis, self.keys, self.group)
        others = {
            consumer_key(self.settings.key_prefix, self.group, name): name
            for names in listed.values()
            for name in names
        }
        dead = {others[key] for key in liveness.dead(self.heartbeat, others)}
        return sum(
            self._take_over(key, name, pending, process)
            for key, names in listed.items()
            for name, pending in sorted(names.items())
            if name in dead
        )

    def _take_over(self, key: str, dead: str, pending: int, process: Process) -> int:
        handled = 0
        if pending:
            log.warning("%s: consumer %s stopped its heartbeat; taking over its %d pending entries of %s",
                        self.consumer, dead, pending, key)  # fmt: skip
        while pending and not self.stop.is_set():
            batch = self.settings.consumer_batch_size
            # The idle guard: an entry delivered within the last beat was not left behind by the dead.
            entries = liveness.claim(
                self.redis, key, self.group, dead, self.consumer, batch, self.settings.consumer_heartbeat_ms
            )
            ENTRIES_TAKEN_OVER.labels(self.group).inc(len(entries))
            handled += process([(key, entries)])
            if len(entries) < batch:
                break
        if liveness.retire(self.redis, key, self.group, dead):
            log.info("%s: removed dead consumer %s from group %s of %s", self.consumer, dead, self.group, key)
        return handled

    def claim_stale(self, process: Process) -> int:
        """Take over entries pending longer than claim_idle_ms (a dead consumer's, or a failing one)."""
        self.next_claim = time.monotonic() + self.settings.claim_idle_ms / 2000
        handled = 0
        for key in self.keys:
            response = self.redis.xautoclaim(
                key,
                self.group,
                self.consumer,
                min_idle_time=self.settings.claim_idle_ms,
                start_id=self.claim_from[key],
                count=self.settings.consumer_batch_size,
            )
            self.claim_from[key] = response[0]
            entries = [(entry_id, fields) for entry_id, fields in response[1] if entry_id is not None]
            handled += process([(key, entries)])
        return handled

    def leave_group(self) -> None:
        """After a clean stop, take our name off every stream's group if we hold nothing pending."""
        for key in self.keys:
            with suppress(redis.RedisError):
                liveness.retire(self.redis, key, self.group, self.consumer)
