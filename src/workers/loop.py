"""The run loop every long-running worker shares: work until stopped, back off after a failure.

A failure never ends a worker for good: a lost connection is expected (PostgreSQL restarts, Redis
fails over) and logged as a warning; anything else is a bug, logged with its traceback. Either way
nothing is lost (the outbox keeps unpublished rows, unacknowledged entries stay pending), so the
worker waits and works again: 0.1 s, doubling to 5 s, back to 0.1 s once a round of work succeeds.
The wait is the stop event's, so SIGTERM cuts it short.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import redis
from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_exponential

from app.platform.db import TRANSIENT_DB_ERRORS

log = logging.getLogger(__name__)
# A lost or busy connection to either service: worth a retry, never a reason to dead-letter an entry.
TRANSIENT = (*TRANSIENT_DB_ERRORS, redis.ConnectionError, redis.TimeoutError)
BACKOFF = wait_exponential(multiplier=0.1, max=5)  # 0.1 s, 0.2 s, 0.4 s ... 5 s


def _never_recovers(_exc: Exception) -> bool:
    return False


def run_until_stopped(
    work: Callable[[], object],
    stop: threading.Event,
    name: str,
    recover: Callable[[Exception], bool] = _never_recovers,
) -> None:
    """Call `work` again and again until `stop` is set; each call that returns is a round of progress.

    `recover` hears of every failure first (a worker resets its state there); True means it dealt
    with the cause, and `work` runs again at once, without backoff or log line.
    """

    def backoff(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, Exception) and recover(exc):
            return 0.0
        return BACKOFF(state)

    retrying = Retrying(
        retry=retry_if_exception_type(Exception),
        stop=lambda _state: stop.is_set(),
        wait=backoff,
        sleep=stop.wait,  # type: ignore[arg-type]  # (its bool result is ignored)
        before_sleep=lambda state: _report(name, state),
        retry_error_callback=lambda _state: None,  # stopped during a failure: return quietly
    )
    while not stop.is_set():
        retrying(work)


def _report(name: str, state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else 0.0
    if not wait:
        return
    if isinstance(exc, TRANSIENT):
        log.warning("%s lost a connection (%s); retrying in %.1fs", name, exc, wait)
    else:
        log.error("%s failed; retrying in %.1fs", name, wait, exc_info=exc)
