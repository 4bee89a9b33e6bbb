"""The pages people open in a browser, and requests that come from other sites.

Browsers resend HTTP Basic credentials on their own, so Basic is accepted only by the admin page
(`/admin`) and rq-dashboard (`/rq`). Those refuse every request that comes from a page of another
origin (another port counts), reads included, since rq-dashboard has state-changing routes of its
own; and nowhere is a state-changing request taken from another site. Browsers say where a request
comes from in Sec-Fetch-Site; older ones send Origin (Referer on some requests). A request with none
of them did not come from a page (curl, a script) and is not cross-site. Pages cannot be framed.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, Response, request

from app.platform.problems import problem
from app.platform.web import UNSAFE_METHODS

SAME_SITE_FETCHES = ("same-origin", "none")  # `none`: typed, bookmarked, or opened from outside a page


def for_browsers() -> bool:
    """The admin page and rq-dashboard: HTTP Basic is accepted there."""
    path = request.path
    return path == "/rq" or path.startswith("/rq/") or path.rstrip("/") == "/admin"


def cross_site() -> bool:
    """Whether the request comes from a page of another origin."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site not in SAME_SITE_FETCHES
    source = request.headers.get("Origin") or request.headers.get("Referer")
    if not source:
        return False
    parts = urlsplit(source)
    return f"{parts.scheme}://{parts.netloc}" != f"{request.scheme}://{request.host}"


def install_browser_rules(app: Flask) -> None:
    """Refuse cross-site requests where they could change something or act as the operator (first of
    all: before authentication), and keep every HTML page out of other sites' frames."""

    @app.before_request
    def _refuse_cross_site() -> Response | None:
        if cross_site() and (for_browsers() or request.method in UNSAFE_METHODS):
            return problem(403, "cross-site requests are refused here: open this page from orderstream itself")
        return None

    @app.after_request
    def _not_framed(response: Response) -> Response:
        if response.mimetype == "text/html":
            response.headers["X-Frame-Options"] = "DENY"
            response.headers["Content-Security-Policy"] = "frame-ancestors 'none'"
        return response
