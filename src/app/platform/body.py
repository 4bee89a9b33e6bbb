"""The request body: read once, within a size and a time, parsed strictly, judged before any view.

- Only authenticated requests have their bodies read (app/platform/auth.py runs first). gunicorn keeps no
  connection alive after a response (gunicorn.conf.py), so a refusal that leaves a body unread
  costs no thread, however slowly that body would have come.
- The body must arrive within ORDERSTREAM_BODY_TIMEOUT_MS (408 beyond) and stay within
  MAX_CONTENT_LENGTH (413), chunked or not; a body the server cannot even decode is a 400.
- JSON is parsed once, strictly, for every reader after (the input guard, the argument parser,
  idempotency fingerprints): bad UTF-8, bad syntax, nesting too deep, NaN or Infinity, numbers
  beyond what converts are 400; text PostgreSQL cannot store is a 422, not a 500.
- A command's body is JSON or nothing (415).
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from flask import Flask, Response, current_app, g, request
from werkzeug.exceptions import (
    BadRequest,
    ClientDisconnected,
    HTTPException,
    RequestEntityTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
)

from app.platform.problems import problem
from app.platform.web import UNSAFE_METHODS, settings

MAX_NUMBER_DIGITS = 40  # more than any field takes; Python refuses past 4,300 digits anyway
NO_BODY = object()
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def request_json() -> Any:
    """The request's JSON body, parsed once per request; NO_BODY when there is none."""
    if "json_body" not in g:
        data = request_body()
        if not data.strip():
            g.json_body = NO_BODY
        else:
            try:
                g.json_body = json.loads(
                    data.decode("utf-8"), parse_constant=_refuse_constant, parse_int=_integer, parse_float=_real
                )
            except UnicodeDecodeError as exc:
                raise BadRequest("the body is not UTF-8") from exc
            except RecursionError as exc:
                raise BadRequest("the JSON body is nested too deeply") from exc
            except ValueError as exc:
                raise BadRequest(f"the body is not valid JSON: {str(exc)[:200]}") from exc
    return g.json_body


def request_body() -> bytes:
    """The body's bytes, read once per request (at most MAX_CONTENT_LENGTH, within the body timeout)."""
    if "raw_body" not in g:
        g.raw_body = _read()
    return g.raw_body


def _read() -> bytes:
    """Read the body chunk by chunk against a deadline (under gunicorn, on its socket's timeout).

    Werkzeug enforces the size limit on a chunked body by reading no further than it, silently: a
    body cut there would then fail to parse. So when a chunked body fills the limit, one more byte
    is asked of the server's stream: if there is one, the body was too large.
    """
    timeout_s = settings().body_timeout_ms / 1000
    deadline = time.monotonic() + timeout_s
    sock = request.environ.get("gunicorn.socket")
    stream = request.stream
    chunks: list[bytes] = []
    try:
        while not getattr(stream, "is_exhausted", False):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RequestTimeout(f"the body did not arrive within {timeout_s:g} s")
            if sock is not None:
                sock.settimeout(remaining)
            chunk = stream.read(64 * 1024)
            if not chunk:
                break
            chunks.append(chunk)
        data = b"".join(chunks)
        limit = current_app.config.get("MAX_CONTENT_LENGTH")
        at_limit = request.content_length is None and limit is not None and len(data) >= limit
        if at_limit and request.environ["wsgi.input"].read(1):
            raise RequestEntityTooLarge(f"the body is larger than {limit} bytes")
        return data
    except ClientDisconnected as exc:
        if isinstance(exc.__context__, TimeoutError):
            raise RequestTimeout(f"the body did not arrive within {timeout_s:g} s") from exc
        raise
    except HTTPException:
        raise
    except TimeoutError as exc:
        raise RequestTimeout(f"the body did not arrive within {timeout_s:g} s") from exc
    except Exception as exc:  # what the server's stream raises: a malformed chunk, a broken connection
        raise BadRequest(f"the body could not be read: {str(exc)[:200]}") from exc
    finally:
        if sock is not None:
            sock.settimeout(None)  # as gunicorn's thread had it: blocking


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _integer(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_NUMBER_DIGITS:
        raise ValueError(f"a number has more than {MAX_NUMBER_DIGITS} digits")
    return int(digits)


def _real(digits: str) -> float:
    value = float(digits)
    if value in (float("inf"), float("-inf")):
        raise ValueError("a number is beyond what a 64-bit float holds")
    return value


def _unstorable(text: str) -> bool:
    """NUL and unpaired surrogates: valid in JSON and URLs, impossible to store in PostgreSQL text."""
    return _UNSTORABLE.search(text) is not None


def _any_unstorable(value: Any) -> bool:
    """Walks the parsed body without recursion (a deeply nested body must not exhaust the stack)."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str) and _unstorable(item):
            return True
        if isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


def _announces_body() -> bool:
    return bool(request.content_length) or "chunked" in request.headers.get("Transfer-Encoding", "").lower()


def install_input_guard(app: Flask, api_blueprints: frozenset[str]) -> None:
    """Judge the request's URL and body once, after authentication and before any view."""

    @app.before_request
    def _guard() -> Response | None:
        limit = app.config.get("MAX_CONTENT_LENGTH")
        if limit is not None and (request.content_length or 0) > limit:  # declared: refused unread
            raise RequestEntityTooLarge(f"the body is larger than {limit} bytes")
        if _unstorable(request.path) or any(_unstorable(k + v) for k, v in request.args.items(multi=True)):
            return problem(400, "the URL holds NUL characters or unpaired surrogates")
        if "principal" not in g:  # public pages take no body: none is judged
            return None
        if request.is_json:  # chunked bodies have no Content-Length: look whenever it says JSON
            body = request_json()
            if body is not NO_BODY and _any_unstorable(body):
                return problem(422, "the body holds NUL characters or unpaired surrogates")
        elif request.method in UNSAFE_METHODS and request.blueprint in api_blueprints and _announces_body():
            raise UnsupportedMediaType("send the command's body as application/json")
        return None
