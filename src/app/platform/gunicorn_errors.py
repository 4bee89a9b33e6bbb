"""gunicorn's own refusals as problem+json.

gunicorn answers some requests before the app sees them: a malformed request line or header (400),
a request line too long (414), too many or too large header fields (431). It writes those as a
small HTML page through `gunicorn.util.write_error`, which it offers no hook to change; the web
workers replace that one function (post_worker_init in gunicorn.conf.py) so that every error the
service answers, wherever it comes from, is RFC 9457 problem details.
"""

from __future__ import annotations

import json
import socket
from http import HTTPStatus


def write_problem(sock: socket.socket, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn.util.write_error's signature, writing application/problem+json."""
    from gunicorn import util

    try:
        title = HTTPStatus(status_int).phrase
    except ValueError:
        title = reason
    body = json.dumps({"type": "about:blank", "title": title, "status": status_int, "detail": mesg or reason}).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/problem+json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    util.write_nonblock(sock, head.encode("latin-1") + body)


def answer_refusals_as_problems() -> None:
    """Make gunicorn write its refusals with write_problem (in this worker process)."""
    from gunicorn import util

    util.write_error = write_problem
