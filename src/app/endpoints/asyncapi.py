"""The AsyncAPI document of the events (GET /asyncapi.json, app/eventlog/asyncapi.py) and its page
(/docs/asyncapi): rendered in the browser by the AsyncAPI project's React component, its standalone
bundle vendored in app/static/asyncapi (`make asyncapi-bundle`), so the page works offline. Public,
like /openapi.json and /docs; not API operations, so not in the OpenAPI document."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import orjson
from flask import Blueprint, Response, render_template

from app.eventlog.asyncapi import asyncapi
from app.platform.web import settings

STATIC = Path(__file__).resolve().parents[1] / "static" / "asyncapi"

blp = Blueprint("asyncapi", __name__, static_folder=STATIC, static_url_path="/static/asyncapi",
                template_folder="templates")  # fmt: skip


@blp.get("/asyncapi.json")
def document() -> Response:
    """The AsyncAPI 3.0 document of this deployment's streams and webhooks."""
    return Response(_document(settings().key_prefix, settings().stream_partitions), mimetype="application/json")


@blp.get("/docs/asyncapi")
def page() -> str:
    """The document, rendered."""
    return render_template("asyncapi.html")


@lru_cache(maxsize=4)
def _document(key_prefix: str, partitions: int) -> bytes:
    return orjson.dumps(asyncapi(key_prefix, partitions))
