"""What each operation accepts, and nothing else: the parameters its schemas declare (and the
OpenAPI document shows), parsed strictly.

- A query parameter no schema of the operation declares is refused (422), not ignored: a typo such
  as `?min_verison=3` would otherwise quietly lose what the client asked for.
- Whole numbers in a query or a path are ASCII digits and nothing more (Python's int() would take
  "1_0", " 1 ", "1\\n" or other scripts' digits).
- The body is read through app.platform.body.request_json (once, strictly).
"""

from __future__ import annotations

import functools
import re
from typing import Any

import marshmallow as ma
from flask import Flask, current_app, request
from flask_smorest import abort
from webargs import core
from webargs.flaskparser import FlaskParser
from werkzeug.routing import IntegerConverter

from app.platform.body import NO_BODY, request_json

WHOLE_NUMBER = re.compile(r"-?[0-9]{1,18}")
PAGINATION = frozenset({"page", "page_size"})


class Parser(FlaskParser):
    """webargs' Flask parser: the body from request_json, whole numbers strictly."""

    def load_json(self, req: Any, schema: Any) -> Any:
        body = request_json()
        return core.missing if body is NO_BODY else body

    def pre_load(self, location_data: Any, *, schema: ma.Schema, req: Any, location: str) -> Any:
        if location in ("query", "querystring", "headers"):
            errors = {
                key: ["Not a valid integer."]
                for name, field in schema.fields.items()
                if isinstance(field, ma.fields.Integer)
                and (key := field.data_key or name) in location_data
                and not all(WHOLE_NUMBER.fullmatch(v) for v in _values(location_data, key))
            }
            if errors:
                raise ma.ValidationError(errors)
        return location_data


def _values(data: Any, key: str) -> list[str]:
    return list(data.getlist(key)) if hasattr(data, "getlist") else [data[key]]


class AsciiIntegerConverter(IntegerConverter):
    """`<int:...>` in a URL: ASCII digits only (werkzeug's `\\d` takes any script's), at most 18."""

    regex = r"[0-9]{1,18}"


def accepted_query(endpoint: str, method: str) -> frozenset[str]:
    """The query parameters the view of this endpoint and method parses."""
    return _accepted(current_app._get_current_object(), endpoint, method.lower())  # type: ignore[attr-defined]


@functools.cache
def _accepted(app: Flask, endpoint: str, method: str) -> frozenset[str]:
    view_class = getattr(app.view_functions[endpoint], "view_class", None)
    view = getattr(view_class, "get" if method == "head" else method, None)
    apidoc = getattr(view, "_apidoc", {})
    names: set[str] = set(PAGINATION) if apidoc.get("pagination") else set()
    for argument in apidoc.get("arguments", {}).get("parameters", []):
        if argument["in"] in ("query", "querystring"):
            schema = argument["schema"] if isinstance(argument["schema"], ma.Schema) else argument["schema"]()
            names |= {field.data_key or name for name, field in schema.fields.items()}
    return frozenset(names)


def install_parameter_check(app: Flask, api_blueprints: frozenset[str]) -> None:
    """Refuse query parameters an operation does not take (after authentication, before the view)."""

    @app.before_request
    def _known_parameters() -> None:
        if not request.args or request.blueprint not in api_blueprints or request.endpoint is None:
            return
        unknown = sorted(set(request.args) - accepted_query(request.endpoint, request.method))
        if unknown:
            abort(
                422,
                message=f"this operation takes no query parameter {', '.join(repr(u[:40]) for u in unknown[:5])}",
                errors={"query": {name[:40]: ["Unknown field."] for name in unknown[:20]}},
            )
