"""Structured JSON logs (structlog) for every process, stdlib loggers included.

Each line is one JSON object with timestamp, level, logger, event and, under `orderstream run`, the
process that wrote it (web.1, projector.1, ...), plus whatever context is bound:
the web binds request_id and correlation_id per request; the relay, the projectors and rq jobs log
the ids carried in each event's metadata, so one request can be followed through every process.
LOG_FORMAT=text gives plain lines for a terminal; LOG_LEVEL sets the level (INFO).
"""

from __future__ import annotations

import logging
import os

import structlog


def configure_logging(level: str | None = None) -> None:
    """Route stdlib logging and structlog through one JSON (or text) formatter on stderr."""
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        _process_name,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer = (
        structlog.dev.ConsoleRenderer(colors=False)
        if os.environ.get("LOG_FORMAT") == "text"
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[*shared[:1], structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level or os.environ.get("LOG_LEVEL", "INFO"))


def _process_name(_logger: object, _method: str, event: structlog.types.EventDict) -> structlog.types.EventDict:
    """Which supervised process wrote the line (web.1, projector.2: `orderstream run` names them)."""
    name = os.environ.get("ORDERSTREAM_PROCESS")
    if name:
        event.setdefault("process", name)
    return event


def event_context(metadata: dict[str, object]) -> dict[str, object]:
    """The ids an event carries from the request that caused it, for a log line's extra fields."""
    return {"request_id": metadata.get("request_id"), "correlation_id": metadata.get("correlation_id")}
