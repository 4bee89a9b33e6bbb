"""Carrying out one delivery (an rq job): build the message, sign it, POST it, record how it went.

The message (`message`) is what docs/asyncapi describes as a webhook message: Standard Webhooks'
`{type, timestamp, data}`, whose data is the event's envelope with its payload as the events API
shows it to an admin: personal data opened, or `erased` once the customer's key is gone
(queries/personal.py). It is built at each attempt, so a retry after an erasure carries nothing.

The URL is checked again after DNS, and where the connection landed (workers/webhooks/urls.py);
redirects are not followed. 2xx: delivered; 5xx, 429 and network errors (a timeout after
TIMEOUT_S, a refused or closed connection): retried on the backoff; another answer or a refused
URL: failed. `webhook-id` is derived from the event and the endpoint: the same on every attempt.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

import requests
from rq import Queue, get_current_job
from sqlalchemy import Connection

from app.eventlog import store as eventstore
from app.eventlog.events import is_order_stream
from app.eventlog.keys import Keyring
from app.platform.auth import Principal
from app.platform.config import Settings
from app.platform.db import make_engine
from queries.personal import reveal
from workers.webhooks import deliveries, endpoints
from workers.webhooks.deliveries import Outcome, Policy
from workers.webhooks.signing import headers
from workers.webhooks.urls import RefusedUrl, Unresolved, resolve, session

log = logging.getLogger(__name__)

TIMEOUT_S = 5  # to connect, and between bytes of the answer
ANSWER_TIME_S = 10  # the whole answer (a receiver trickling bytes is cut off)
JOB_TIMEOUT_S = 30  # rq's limit on one job (never beyond the lease: `job_timeout`)
RECEIVER = Principal("webhook", "webhook", "admin")  # opens what an admin may: erased stays erased


def message_id(delivery: dict[str, Any]) -> str:
    """Standard Webhooks' `webhook-id`: one per event and endpoint, never changing across attempts."""
    return f"msg_{delivery['event_id']}.{delivery['endpoint_id']}".replace("-", "")


def message(conn: Connection, keyring: Keyring, stream_id: str, version: int) -> dict[str, Any]:
    """The webhook message of one event, as sent now."""
    event = eventstore.load(conn, stream_id, version - 1, version)[0]
    payload = dict(event.payload)
    if "personal" in payload:
        reveal(conn, keyring, RECEIVER, [payload])
    return {
        "type": event.type,
        "timestamp": event.recorded_at.isoformat(),
        "data": {
            "event_id": event.event_id, "type": event.type,
            "order_id": event.stream_id if is_order_stream(event.stream_id) else None,
            "stream_id": event.stream_id, "version": event.version, "position": event.position,
            "schema_version": event.schema_version, "recorded_at": event.recorded_at.isoformat(),
            "payload": payload,
        },
    }  # fmt: skip


class _Process:
    """What a sender process keeps between jobs: its engine and its HTTP session (kept-alive connections
    to receivers). The sender runs jobs in-process (rq's SimpleWorker, the Procfile's `sender`), so a
    delivery costs its three statements and its POST, not a new connection; a forked child (rq's
    default worker) builds its own."""

    def __init__(self, settings: Settings) -> None:
        self.pid, self.database_url = os.getpid(), settings.database_url
        self.engine = make_engine(settings, pool_size=1)
        self.http = session(settings.webhooks_allow_private)
        self.allow_private = settings.webhooks_allow_private

    def serves(self, settings: Settings) -> bool:
        return (self.pid, self.database_url, self.allow_private) == (
            os.getpid(),
            settings.database_url,
            settings.webhooks_allow_private,
        )

    def close(self) -> None:
        self.http.close()
        if self.pid == os.getpid():
            self.engine.dispose()


_process: _Process | None = None


def _for(settings: Settings) -> _Process:
    global _process
    if _process is None or not _process.serves(settings):
        if _process is not None:
            _process.close()
        _process = _Process(settings)
    return _process


def policy(settings: Settings) -> Policy:
    return Policy(settings.webhooks_lease_s, settings.webhooks_backoff_s, settings.webhooks_disable_after_s)


def job_timeout(settings: Settings) -> int:
    """rq's limit on a delivery's job: 30 s, and always within its lease (so the pump never sends
    again a delivery whose job still runs)."""
    return max(1, int(min(JOB_TIMEOUT_S, settings.webhooks_lease_s - 2)))


def deliver(delivery_id: int) -> str:
    """The rq job: one attempt of one delivery; returns its status after it."""
    settings = Settings.from_env()
    process, keyring, rules = _for(settings), Keyring.from_settings(settings), policy(settings)
    job = get_current_job()
    job_id = job.id if job is not None else None
    with process.engine.begin() as conn:
        verdict, delivery = deliveries.start(conn, delivery_id, job_id, rules.lease_s)
    if delivery is None:
        return verdict
    try:
        with process.engine.connect() as conn:
            url, secret = endpoints.target(conn, keyring, delivery["endpoint_id"])
            shown = message(conn, keyring, delivery["stream_id"], delivery["version"])
        body = json.dumps(shown, separators=(",", ":"), default=str).encode()
        outcome = attempt(process.http, url, secret, message_id(delivery), body, settings)
    except Exception as exc:  # ours (a master key not configured, PostgreSQL gone, rq's time limit): retried, logged
        log.exception("webhook delivery %s could not be attempted", delivery_id)
        outcome = Outcome(None, f"failed on our side: {type(exc).__name__}: {exc}"[:500], retryable=True)
    with process.engine.begin() as conn:
        status = deliveries.settle(conn, delivery_id, job_id, outcome, rules)
        settled = job is not None and status in ("delivered", "failed")  # the stream's next event may go
        following = deliveries.take_following(conn, delivery, rules) if settled else None
    if following is not None and job is not None:  # committed: its job finds it queued
        enqueue(Queue(job.origin, connection=job.connection), [following], settings)
    return status


def enqueue(queue: Queue, due: list[dict[str, Any]], settings: Settings) -> None:
    """A job for each delivery taken (queued, under the job id it was given), visible in rq-dashboard."""
    queue.enqueue_many([
        Queue.prepare_data(
            deliver, (delivery["id"],), job_id=delivery["job_id"], timeout=job_timeout(settings), result_ttl=600,
            failure_ttl=86400,
            description=f"webhook {delivery['event_type']} v{delivery['version']} of {delivery['stream_id']}"
            f" to endpoint {delivery['endpoint_id']}",
        )
        for delivery in due
    ])  # fmt: skip


def attempt(http: requests.Session, url: str, secret: str, msg_id: str, body: bytes, settings: Settings) -> Outcome:
    """One POST, and how it went."""
    try:
        resolve(url, settings.webhooks_allow_private)
        response = http.post(url, data=body, headers=headers(secret, msg_id, int(time.time()), body),
                             timeout=TIMEOUT_S, allow_redirects=False, stream=True)  # fmt: skip
        with response:
            code = response.status_code
            text = _answer(response)  # (read, so a kept-alive connection can carry the next delivery)
            if 300 <= code < 400:
                text = f"a redirect to {response.headers.get('location', '?')}, not followed. {text}"
    except Unresolved as exc:  # DNS may be back by the next attempt
        return Outcome(None, str(exc)[:500], retryable=True)
    except RefusedUrl as exc:
        return Outcome(None, str(exc)[:500], retryable=False)
    except (requests.RequestException, OSError) as exc:
        return Outcome(None, f"{type(exc).__name__}: {exc}"[:500], retryable=True)
    if 200 <= code < 300:
        return Outcome(code, None, retryable=False)  # (what a 2xx says is not kept)
    return Outcome(code, text[:500], retryable=code >= 500 or code == 429)


def _answer(response: requests.Response, limit: int = 500) -> str:
    """The first bytes of the answer's body (for the deliveries list), within ANSWER_TIME_S."""
    deadline, chunks, size = time.monotonic() + ANSWER_TIME_S, [], 0
    for chunk in response.iter_content(256):
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit or time.monotonic() > deadline:
            break
    return b"".join(chunks)[:limit].decode(errors="replace")
