"""Signals and logging shared by the long-running worker processes."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT: the worker finishes its batch and returns."""
    stop = threading.Event()

    def _handler(signum: int, _frame: object) -> None:
        logging.getLogger(__name__).info("received %s, stopping after the current batch", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, _handler)
    signal.signal(signal.SIGINT, _handler)
    return stop


def consumer_name() -> str:
    """A consumer name unique to this process: host and pid."""
    return f"{socket.gethostname()}-{os.getpid()}"


def configure_logging() -> None:
    from app.platform.logs import configure_logging as configure

    configure()
