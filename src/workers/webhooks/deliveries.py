"""The webhook_deliveries table (its one owner): one row per (endpoint, event), the truth of what was
sent. rq jobs carry deliveries out; this table says which are due, in what order, and how they went.

- Recorded by the `webhooks` consumer group in the transaction of its checkpoints (exactly once
  per endpoint and event; redeliveries of a stream entry add nothing).
- Due: pending or retrying, its next attempt reached, its endpoint enabled, and no earlier event of
  the same stream still on its way to that endpoint (pending, queued or retrying: events of one
  order reach an endpoint in version order; a failed one no longer holds the rest back). The pump
  (an rq cron job) marks due ones queued and enqueues a job each; a job that settles one queues the
  stream's next at once. An endpoint that is failing has at most FAILING_IN_FLIGHT queued at once,
  so it cannot fill the senders' queue ahead of healthy ones.
- A job counts its attempt when it starts, and its lease (ORDERSTREAM_WEBHOOKS_LEASE_S) runs from
  then; one queued whose lease ran out was lost: sent again at once if its job never started (lost
  with Redis), or, if it started and never reported (its sender killed, or hung), concluded as a
  failed attempt and retried on the backoff. A job still waiting in its queue keeps its delivery.
- After an attempt: delivered; or retrying at the next step of the backoff (5xx, 429, network errors;
  ORDERSTREAM_WEBHOOKS_BACKOFF_S); or failed (another 4xx, a URL refused, or the last attempt). A
  failed one can be redelivered by an operator.
- An endpoint remembers since when its deliveries fail (`failing_since`, cleared by a success); one
  failing for ORDERSTREAM_WEBHOOKS_DISABLE_AFTER_S (a day) is disabled, with the reason. A disabled
  endpoint's deliveries are held (due in the year 9999), new ones included, until it is enabled again.
- Settled deliveries are purged after ORDERSTREAM_WEBHOOKS_KEEP_S (upkeep).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from psycopg.rows import dict_row
from sqlalchemy import Connection

from app.eventlog.envelope import RecordedEvent
from app.platform.db import driver
from workers.webhooks import endpoints
from workers.webhooks.endpoints import HELD

STATUSES = ("pending", "queued", "retrying", "delivered", "failed")
OPEN = ("pending", "queued", "retrying")  # on its way: a later event of its stream waits for it
FAILING_IN_FLIGHT = 2  # deliveries queued at once to an endpoint whose deliveries are failing
LOST = "the attempt did not report within the lease (its sender was killed, or it hung)"


@dataclass(frozen=True)
class Policy:
    """How deliveries are retried: the lease of a queued one, the backoff, when an endpoint is disabled."""

    lease_s: float
    backoff_s: Sequence[float]
    disable_after_s: float


@dataclass(frozen=True)
class Outcome:
    """How one attempt went: the receiver's status code, or the error that stopped it."""

    code: int | None
    error: str | None
    retryable: bool

    @property
    def delivered(self) -> bool:
        return self.code is not None and 200 <= self.code < 300

    @property
    def summary(self) -> str:
        return f"HTTP {self.code}" if self.code is not None else (self.error or "no answer")


_COLUMNS = (
    "d.id, d.endpoint_id::text AS endpoint_id, d.event_id::text AS event_id, d.stream_id, d.version, d.position,"
    " d.event_type, d.status, d.attempts, d.attempts_before, d.job_id, d.last_status_code, d.last_error,"
    " d.last_attempt_at, d.next_attempt_at, d.queued_at, d.created_at, d.delivered_at"
)


def record(conn: Connection, endpoint_ids: Sequence[str], event: RecordedEvent, held: bool = False) -> int:
    """A pending delivery of the event to each endpoint (once: a repeat adds nothing); `held`: for
    disabled endpoints, due once they are enabled."""
    if not endpoint_ids:
        return 0
    return (
        driver(conn)
        .execute(
            "INSERT INTO webhook_deliveries (endpoint_id, event_id, stream_id, version, position, event_type, status,"
            " next_attempt_at) SELECT e, %s, %s, %s, %s, %s, 'pending', coalesce(%s, now())"
            " FROM unnest(%s::uuid[]) AS e ON CONFLICT (endpoint_id, event_id) DO NOTHING",
            (
                event.event_id,
                event.stream_id,
                event.version,
                event.position,
                event.type,
                HELD if held else None,
                list(endpoint_ids),
            ),
        )
        .rowcount
    )


_DUE = f"""
    SELECT {_COLUMNS}, e.failing_since IS NOT NULL AS failing
    FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id AND e.enabled
    WHERE d.status IN ('pending', 'retrying', 'queued') AND d.next_attempt_at <= now()
      AND NOT EXISTS (SELECT 1 FROM webhook_deliveries earlier
                      WHERE earlier.endpoint_id = d.endpoint_id AND earlier.stream_id = d.stream_id
                        AND earlier.version < d.version AND earlier.status IN ('pending', 'queued', 'retrying'))
      {{following}}
    ORDER BY d.position LIMIT %(limit)s FOR UPDATE OF d SKIP LOCKED
"""
_FOLLOWING = (  # (one already queued is its job's, or the pump's to judge)
    "AND d.endpoint_id = %(endpoint)s AND d.stream_id = %(stream)s AND d.version > %(version)s AND d.status <> 'queued'"
)
Waiting = Callable[[list[str]], set[str]]  # of these rq job ids, those still waiting in their queue


def take_due(conn: Connection, policy: Policy, waiting: Waiting, limit: int = 200) -> list[dict[str, Any]]:
    """Deliveries due now, marked queued under a new rq job id each (the caller enqueues the jobs
    once this commits); lost ones concluded or sent again (see the module's docstring)."""
    rows = _select(conn, _DUE.format(following=""), {"limit": limit})
    lost = [r for r in rows if r["status"] == "queued"]
    if lost:
        still = waiting([r["job_id"] for r in lost if r["job_id"]])
        _extend(conn, [r["id"] for r in lost if r["job_id"] in still], policy.lease_s)
        started = [r for r in lost if r["job_id"] not in still and _started(r)]
        for row in started:
            _conclude(conn, row, Outcome(None, LOST, retryable=True), policy)
        rows = [r for r in rows if r["status"] != "queued" or (r["job_id"] not in still and not _started(r))]
    return _queue(conn, _within_limits(conn, rows), policy.lease_s)


def take_following(conn: Connection, settled: dict[str, Any], policy: Policy) -> dict[str, Any] | None:
    """The next event of a stream for the endpoint a delivery was just settled for, if it is due now,
    marked queued like the pump's (the settling job enqueues it at once: a busy stream is not held to
    one event per run of the pump)."""
    params = {"limit": 1, "endpoint": settled["endpoint_id"], "stream": settled["stream_id"]}
    rows = _select(conn, _DUE.format(following=_FOLLOWING), {**params, "version": settled["version"]})
    taken = _queue(conn, _within_limits(conn, rows), policy.lease_s)
    return taken[0] if taken else None


def _select(conn: Connection, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    return driver(conn).cursor(row_factory=dict_row).execute(sql, params).fetchall()


def _started(row: dict[str, Any]) -> bool:
    return (
        row["last_attempt_at"] is not None
        and row["queued_at"] is not None
        and row["last_attempt_at"] >= row["queued_at"]
    )


def _extend(conn: Connection, ids: list[int], lease_s: float) -> None:
    if ids:
        driver(conn).execute(
            "UPDATE webhook_deliveries SET next_attempt_at = now() + make_interval(secs => %s) WHERE id = ANY(%s)",
            (lease_s, ids),
        )


def _within_limits(conn: Connection, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """At most FAILING_IN_FLIGHT queued at once per failing endpoint."""
    failing = sorted({r["endpoint_id"] for r in rows if r["failing"]})
    if not failing:
        return rows
    queued = dict(
        driver(conn)
        .execute(
            "SELECT endpoint_id::text, count(*) FROM webhook_deliveries WHERE endpoint_id = ANY(%s::uuid[])"
            " AND status = 'queued' GROUP BY endpoint_id",
            (failing,),
        )
        .fetchall()
    )
    kept = []
    for row in rows:
        if row["failing"]:
            if queued.get(row["endpoint_id"], 0) >= FAILING_IN_FLIGHT:
                continue
            queued[row["endpoint_id"]] = queued.get(row["endpoint_id"], 0) + 1
        kept.append(row)
    return kept


def _queue(conn: Connection, rows: list[dict[str, Any]], lease_s: float) -> list[dict[str, Any]]:
    for row in rows:
        row["job_id"] = f"webhook-{row['id']}-{uuid.uuid4().hex[:12]}"
    if rows:
        driver(conn).execute(
            "UPDATE webhook_deliveries d SET status = 'queued', queued_at = now(), job_id = j.job_id,"
            " next_attempt_at = now() + make_interval(secs => %s)"
            " FROM unnest(%s::bigint[], %s::text[]) AS j (id, job_id) WHERE d.id = j.id",
            (lease_s, [r["id"] for r in rows], [r["job_id"] for r in rows]),
        )
    return rows


def start(conn: Connection, delivery_id: int, job_id: str | None, lease_s: float) -> tuple[str, dict[str, Any] | None]:
    """A job takes its delivery: ("go", the delivery), its attempt counted and a full lease from now
    (under the row's lock: the pump either took it first, and this job sees another job id, or waits
    a lease more); or why not: "gone" (its endpoint was removed), "superseded" (a later job has it),
    "held" (its endpoint was disabled meanwhile: it waits, unsent)."""
    row = _select(
        conn,
        f"SELECT {_COLUMNS}, e.enabled FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id"
        " WHERE d.id = %(id)s FOR UPDATE OF d",
        {"id": delivery_id},
    )
    if not row:
        return "gone", None
    delivery = row[0]
    if delivery["status"] != "queued" or (job_id is not None and delivery["job_id"] != job_id):
        return "superseded", None
    pg = driver(conn)
    if not delivery["enabled"]:
        pg.execute(
            "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = %s WHERE id = %s", (HELD, delivery_id)
        )
        return "held", None
    pg.execute(
        "UPDATE webhook_deliveries SET attempts = attempts + 1, last_attempt_at = now(),"
        " next_attempt_at = now() + make_interval(secs => %s) WHERE id = %s",
        (lease_s, delivery_id),
    )
    return "go", {**delivery, "attempts": delivery["attempts"] + 1}


def settle(conn: Connection, delivery_id: int, job_id: str | None, outcome: Outcome, policy: Policy) -> str:
    """Record a started attempt's outcome on the delivery and its endpoint; returns the delivery's new
    status. An attempt whose job no longer holds the delivery (its lease ran out and the pump
    concluded it, or gave it to another job) changes nothing."""
    row = _select(
        conn, f"SELECT {_COLUMNS} FROM webhook_deliveries d WHERE d.id = %(id)s FOR UPDATE", {"id": delivery_id}
    )
    if not row:  # its endpoint was removed meanwhile
        return "gone"
    if row[0]["status"] != "queued" or (job_id is not None and row[0]["job_id"] != job_id):
        return str(row[0]["status"])
    return _conclude(conn, row[0], outcome, policy)


def _conclude(conn: Connection, delivery: dict[str, Any], outcome: Outcome, policy: Policy) -> str:
    """The attempt counted at its start concluded: delivered, retrying after the backoff, or failed."""
    this_round = delivery["attempts"] - delivery["attempts_before"]
    if outcome.delivered:
        status, delay = "delivered", 0.0
    elif outcome.retryable and this_round <= len(policy.backoff_s):
        status, delay = "retrying", policy.backoff_s[max(this_round, 1) - 1]
    else:
        status, delay = "failed", 0.0
    driver(conn).execute(
        "UPDATE webhook_deliveries SET status = %s, last_status_code = %s, last_error = %s,"
        " next_attempt_at = now() + make_interval(secs => %s),"
        " delivered_at = CASE WHEN %s = 'delivered' THEN now() END WHERE id = %s",
        (status, outcome.code, outcome.error, delay, status, delivery["id"]),
    )
    endpoints.record_outcome(conn, delivery["endpoint_id"], outcome.delivered, outcome.summary, policy.disable_after_s)
    return status


def redeliver(conn: Connection, endpoint_id: str, delivery_id: int) -> dict[str, Any] | None:
    """Send the delivery again as soon as the pump runs (if its endpoint is enabled and no earlier
    event of its stream is on its way). A delivered or failed one starts a fresh round of retries
    (`attempts` keeps counting); one waiting for a retry is due at once; one queued is left to its job."""
    return (
        driver(conn)
        .cursor(row_factory=dict_row)
        .execute(
            f"""UPDATE webhook_deliveries d SET
                  status = CASE WHEN status IN ('delivered', 'failed') THEN 'pending' ELSE status END,
                  attempts_before = CASE WHEN status IN ('delivered', 'failed') THEN attempts ELSE attempts_before END,
                  next_attempt_at = CASE WHEN status = 'queued' THEN next_attempt_at ELSE now() END
                WHERE id = %s AND endpoint_id = %s RETURNING {_COLUMNS}""",
            (delivery_id, endpoint_id),
        )
        .fetchone()
    )


def page(conn: Connection, endpoint_id: str, status: str | None, offset: int, limit: int
         ) -> tuple[list[dict[str, Any]], int]:  # fmt: skip
    """An endpoint's deliveries, newest event first, and how many there are."""
    where, params = "d.endpoint_id = %(e)s", {"e": endpoint_id, "s": status, "o": offset, "l": limit}
    if status is not None:
        where += " AND d.status = %(s)s"
    order = "ORDER BY d.position DESC, d.id OFFSET %(o)s LIMIT %(l)s"
    rows = _select(conn, f"SELECT {_COLUMNS} FROM webhook_deliveries d WHERE {where} {order}", params)
    total = driver(conn).execute(f"SELECT count(*) FROM webhook_deliveries d WHERE {where}", params).fetchone()
    for row in rows:  # a settled delivery has no next attempt; a held one none yet
        if row["status"] in ("delivered", "failed") or row["next_attempt_at"] == HELD:
            row["next_attempt_at"] = None
    return rows, int(total[0]) if total else 0


def purge(conn: Connection, keep_s: float, batch: int) -> int:
    """Delete up to `batch` deliveries settled more than `keep_s` ago; returns how many."""
    return (
        driver(conn)
        .execute(
            "DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM webhook_deliveries"
            " WHERE status IN ('delivered', 'failed') AND last_attempt_at"
            " < now() - make_interval(secs => %s) LIMIT %s FOR UPDATE SKIP LOCKED)",
            (keep_s, batch),
        )
        .rowcount
    )
