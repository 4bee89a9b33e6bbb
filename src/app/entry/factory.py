"""create_app(): the composition root of the web process."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from flask import Flask, redirect
from redis import Redis
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wrappers import Response

from app.eventlog.catalogue import catalogue
from app.eventlog.events import EVENT_TYPES
from app.eventlog.personal import Unreadable
from app.eventlog.streams import streams_client
from app.platform.api import Api
from app.platform.auth import install_auth
from app.platform.body import install_input_guard
from app.platform.browsers import install_browser_rules
from app.platform.config import Settings
from app.platform.dashboard import install_dashboard
from app.platform.db import make_engine
from app.platform.limits import install_rate_limits
from app.platform.metrics import install_metrics
from app.platform.parameters import AsciiIntegerConverter, install_parameter_check
from app.platform.problems import install_unavailable
from app.platform.web import install_request_ids
from app.processes.records import ProcessRecords

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> Flask:
    """Build the Flask app: API blueprints, OpenAPI + Swagger UI and AsyncAPI (local assets), rq-dashboard."""
    import rq_dashboard

    from app.endpoints.admin import blp as admin_blp
    from app.endpoints.asyncapi import blp as asyncapi_blp
    from app.endpoints.audit import blp as audit_blp
    from app.endpoints.health import blp as health_blp
    from app.endpoints.stock_audit import blp as stock_audit_blp
    from app.eventlog.keys import Keyring
    from commands.customer_views import blp as customer_commands_blp
    from commands.schemas import SKU_PATTERN, SkuConverter
    from commands.stock_views import blp as stock_commands_blp
    from commands.views import blp as commands_blp
    from queries.customer_views import blp as customer_queries_blp
    from queries.stats_views import blp as stats_blp
    from queries.stock_views import blp as stock_queries_blp
    from queries.views import blp as queries_blp
    from workers.consumers import GROUPS
    from workers.gauges import StreamGauges

    blueprints = (
        commands_blp, queries_blp, stats_blp, audit_blp, stock_commands_blp, stock_queries_blp, stock_audit_blp,
        customer_commands_blp, customer_queries_blp, admin_blp, health_blp,
    )  # fmt: skip

    settings = settings or Settings.from_env()
    # The app's static files are Swagger UI's (5.x, from the flask-swagger-ui wheel, so /docs works
    # offline and reads OpenAPI 3.1).
    app = Flask("orderstream", static_folder=swagger_ui_dist(), static_url_path="/static/swagger-ui")
    app.config.from_object(rq_dashboard.default_settings)
    app.config.update(
        API_TITLE="orderstream",
        API_VERSION="1",
        # 3.1: a nullable reference is anyOf [$ref, {type: null}], which client generators type as
        # `Shipment | None` (3.0's nullable cannot sit beside a $ref).
        OPENAPI_VERSION="3.1.0",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL="/static/swagger-ui/",
        API_SPEC_OPTIONS={
            "info": {
                "description": "Event-sourced order management. Commands append events; queries read projections."
                "\n\nThe events, on the Redis streams and as webhooks: [AsyncAPI](/docs/asyncapi)"
                " ([document](/asyncapi.json))."
            },
            "x-event-catalogue": catalogue(),
            "security": [{"bearerAuth": []}],
            "components": {
                "securitySchemes": {
                    "bearerAuth": {
                        "type": "http",
                        "scheme": "bearer",
                        "description": "a token from `orderstream tokens create NAME --role reader|writer|admin`",
                    }
                }
            },
        },
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        RQ_DASHBOARD_REDIS_URL=settings.redis_url,
    )
    keyring = Keyring.from_settings(settings)  # refuses to start without a master key
    engine, streams = make_engine(settings), streams_client(settings)
    app.extensions["orderstream"] = {
        "settings": settings,
        "keyring": keyring,
        "engine": engine,
        "redis": Redis.from_url(settings.redis_url),
        "streams": streams,
        "waiting_reads": threading.BoundedSemaphore(settings.max_waiting_reads),
    }
    if settings.trusted_proxies:  # the client's address (for the failed-login limit) as the proxy saw it
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=settings.trusted_proxies, x_proto=settings.trusted_proxies,
            x_host=settings.trusted_proxies,
        )  # fmt: skip
    # The order of these is the order every request meets them: nothing judges a request before
    # it is authenticated, and nothing reads its body before the input guard.
    # Lag and backlog are read from Redis and PostgreSQL at each scrape, whichever worker is dead.
    collectors = [ProcessRecords(), StreamGauges(settings, engine, streams)]
    install_metrics(app, event_types=sorted(EVENT_TYPES), projections=sorted(GROUPS), collectors=collectors)
    install_request_ids(app)
    install_browser_rules(app)
    install_auth(app, settings)
    install_rate_limits(app, settings)
    install_input_guard(app, frozenset(blp.name for blp in blueprints))
    install_parameter_check(app, frozenset(blp.name for blp in blueprints))
    install_unavailable(app)
    app.register_error_handler(Unreadable, _keys_unavailable)
    app.url_map.converters["int"] = AsciiIntegerConverter  # before any rule is added
    app.url_map.converters["sku"] = SkuConverter

    api = Api(app)
    api.register_converter(SkuConverter, lambda _converter: {"type": "string", "pattern": f"^{SKU_PATTERN}$"})
    for blp in blueprints:
        api.register_blueprint(blp)

    app.register_blueprint(asyncapi_blp)  # /asyncapi.json and its page: not API operations
    install_dashboard(app, rq_dashboard)

    @app.get("/")
    def _index() -> Response:
        return redirect("/docs")

    return app


def swagger_ui_dist() -> str:
    """Swagger UI's files as the flask-swagger-ui wheel ships them."""
    import flask_swagger_ui

    return str(Path(flask_swagger_ui.__file__).parent / "dist")


def _keys_unavailable(exc: Exception) -> Any:
    """A data key wrapped under a master key this process was not given (a rotation half done, a
    wrong ORDERSTREAM_MASTER_KEY): the operator's to fix; nothing was changed."""
    from app.platform.problems import problem

    log.error("personal data keys unavailable: %s", exc)
    detail = (
        "personal data cannot be opened or sealed now: a data key is wrapped under a master key this"
        " service was not given (ORDERSTREAM_MASTER_KEY, ORDERSTREAM_PREVIOUS_MASTER_KEYS); nothing was changed"
    )
    return problem(503, detail, {"Retry-After": "60"})
