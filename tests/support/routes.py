"""Every route the app serves, with sample values for its URL variables: tests that must hold for
all routes (authentication first, bodies judged alike, no 500 from any URL) walk this list, so a
route added later is covered without anyone remembering to add it."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from flask import Flask

from app.platform.auth import PUBLIC_PREFIXES

SAMPLES: dict[str, Callable[[], str]] = {
    "UUIDConverter": lambda: str(uuid.uuid4()),
    "IntegerConverter": lambda: "1",
    "AsciiIntegerConverter": lambda: "1",
    "UnicodeConverter": lambda: "A",
    "PathConverter": lambda: "a/b",
    "SkuConverter": lambda: "SKU-1",
}
UNSAFE = ("POST", "PUT", "PATCH", "DELETE")
NOT_OURS = ("rq_dashboard.", "static", "api-docs.", "asyncapi.")  # endpoints of rq-dashboard, files, docs
# A body each operation accepts (the rest take none).
VALID_BODIES: dict[str, dict[str, Any]] = {
    "order-commands.Orders": {"customer_id": "c-1", "currency": "EUR",
                              "items": [{"sku": "A", "quantity": 2, "unit_price": "9.99"}]},
    "order-commands.Items": {"sku": "B", "quantity": 1, "unit_price": "1.00"},
    "order-commands.Payments": {"amount": "19.98", "reference": "psp"},
    "order-commands.Shipments": {"carrier": "DHL", "tracking_number": "T"},
    "order-commands.Cancellation": {"reason": "r"},
    "admin.Discard": {"reason": "r"},
    # (an address literal: a public one, which no DNS is needed to check)
    "admin.Webhooks": {"url": "https://93.184.215.14/hook", "event_types": ["*"]},
    "admin.Webhook": {"description": "d"},
    "stock-commands.Receipts": {"quantity": 5, "reference": "r"},
    "stock-commands.Adjustments": {"quantity": 1, "reason": "r"},
}  # fmt: skip


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
        """Served by our blueprints (not rq-dashboard, not static files, not the API's or the events' docs)."""
        return not self.endpoint.startswith(NOT_OURS) and self.endpoint not in ("_index", "_metrics")


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


def our_routes(app: Flask, order_id: str) -> Iterator[Route]:
    """Our own operations (not rq-dashboard's or static files), on an existing order and SKU."""
    return (r for r in routes(app, {"order_id": order_id, "sku": "A"}) if r.ours)
