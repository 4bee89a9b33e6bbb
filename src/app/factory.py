"""create_app(): the composition root of the web process."""

from __future__ import annotations

from flask import Flask, redirect
from redis import Redis
from swagger_ui_bundle import swagger_ui_path
from werkzeug.wrappers import Response

from app.auth import install_auth
from app.config import Settings
from app.db import make_engine
from app.events import catalogue
from app.limits import install_rate_limits
from app.metrics import install_metrics
from app.problems import Api, install_unavailable
from app.streams import streams_client
from app.web import install_input_guard, install_request_ids


def create_app(settings: Settings | None = None) -> Flask:
    """Build the Flask app: API blueprints, OpenAPI + Swagger UI (local assets), rq-dashboard."""
    import rq_dashboard

    from app.admin import blp as admin_blp
    from app.audit import blp as audit_blp
    from app.health import blp as health_blp
    from commands.views import blp as commands_blp
    from queries.stats_views import blp as stats_blp
    from queries.views import blp as queries_blp

    settings = settings or Settings.from_env()
    # The app's static files are Swagger UI's (a wheel, so /docs works offline).
    app = Flask("orderstream", static_folder=str(swagger_ui_path), static_url_path="/static/swagger-ui")
    app.config.from_object(rq_dashboard.default_settings)
    app.config.update(
        API_TITLE="orderstream",
        API_VERSION="1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL="/static/swagger-ui/",
        API_SPEC_OPTIONS={
            "info": {
                "description": "Event-sourced order management. Commands append events; queries read projections."
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
    app.extensions["orderstream"] = {
        "settings": settings,
        "engine": make_engine(settings),
        "redis": Redis.from_url(settings.redis_url),
        "streams": streams_client(settings),
    }
    install_metrics(app)
    install_request_ids(app)
    install_input_guard(app)
    install_auth(app)
    install_rate_limits(app, settings)
    install_unavailable(app)

    api = Api(app)
    api.register_blueprint(commands_blp)
    api.register_blueprint(queries_blp)
    api.register_blueprint(stats_blp)
    api.register_blueprint(audit_blp)
    api.register_blueprint(admin_blp)
    api.register_blueprint(health_blp)

    rq_dashboard.web.setup_rq_connection(app)
    app.register_blueprint(rq_dashboard.blueprint, url_prefix="/rq")

    @app.get("/")
    def _index() -> Response:
        return redirect("/docs")

    return app
