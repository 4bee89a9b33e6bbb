"""Every route the app serves, with sample values for its URL variables: tests that must hold for
all routes (authentication first, bodies judged alike, no 500 from any URL) walk this list, so a
route added later is covered without anyone remembering to add it."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from flask import Flask

from app.auth import PUBLIC_PREFIXES

SAMPLES: dict[str, Callable[[], str]] = {
    "UUIDConverter": lambda: str(uuid.uuid4()),
    "IntegerConverter": lambda: "1",
    "UnicodeConverter": lambda: "A",
    "PathConverter": lambda: "a/b",
}
UNSAFE = ("POST", "PUT", "PATCH", "DELETE")


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    endpoint: str
    rule: str

    @property
    def public(self) -> bool:
        return self.path == "/" or self.path.startswith(PUBLIC_PREFIXES)

    @property
    def ours(self) -> bool:
        """Served by our blueprints (not rq-dashboard, not static files)."""
        return not self.endpoint.startswith(("rq_dashboard.", "static", "api-docs.")) and self.endpoint != "_index"


def routes(app: Flask, values: dict[str, str] | None = None) -> Iterator[Route]:
    """(method, concrete path) for every rule and method, URL variables filled with samples (or `values`)."""
    for rule in app.url_map.iter_rules():
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):  # type: ignore[operator]
            path = re.sub(
                r"<(?:[^:<>]+:)?([^<>]+)>",
                lambda m, rule=rule: (
                    (values or {}).get(m.group(1)) or SAMPLES[type(rule._converters[m.group(1)]).__name__]()
                ),
                rule.rule,
            )
            yield Route(method, path, rule.endpoint, rule.rule)
