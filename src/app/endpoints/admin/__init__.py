"""Operator endpoints under /admin: the instance's processes, dead letters, background jobs,
projections and rebuilds, the fulfilment process manager, webhooks, the relay and the streams, and one page
that shows it all at a glance. Every one needs an admin token."""

from app.platform.api import Blueprint

blp = Blueprint(
    "admin", __name__, url_prefix="/admin", description="Operating orderstream", template_folder="templates"
)

from app.endpoints.admin import (  # noqa: E402,F401  (their routes join blp)
    dead_letters,
    fulfilment,
    jobs,
    processes,
    projections,
    status,
    webhooks,
)
