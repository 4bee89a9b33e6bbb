"""JSON Schemas of the messages that carry events out of the service, for the AsyncAPI document:

- a stream entry (app/eventlog/streams.py `encode_entry`): the whole envelope (envelope.py
  `RecordedEvent.to_json`) as JSON text in field `envelope`, beside fields for people reading with
  redis-cli; its payload in the stored form (app/eventlog/payload_schemas.py);
- a webhook (workers/webhooks/send.py `message`): Standard Webhooks' `{type, timestamp, data}`, data
  the envelope without its metadata, with `order_id`, and its payload opened as an admin sees it; its
  headers those of workers/webhooks/signing.py.

Each event type's envelope ties its `schema_version` to the payload schema of that version.
"""

from __future__ import annotations

from typing import Any, get_args

from app.eventlog.events import CUSTOMER_PREFIX, EVENT_TYPES, INVENTORY_PREFIX, Event, InventoryEvent
from app.eventlog.payload_schemas import REF, Form, Schema, payload_name, versions

TIMESTAMP = {"type": "string", "format": "date-time", "description": "ISO 8601, with its UTC offset"}
ENVELOPE = {
    "event_id": {"type": "string", "format": "uuid", "description": "the event's own id"},
    "stream_id": {"type": "string", "description": "the aggregate stream it belongs to"},
    "version": {"type": "integer", "minimum": 1, "description": "its place in its stream: 1, 2, 3, ... no gaps"},
    "position": {"type": "integer", "minimum": 1, "description": "its place in the whole log (rising, with gaps)"},
}
METADATA: Schema = {
    "type": "object",
    "description": "What caused the event (app/platform/web.py event_metadata, or the fulfilment process"
    " manager's). Open: readers ignore members they do not know.",
    "properties": {
        "request_id": {"type": ["string", "null"], "description": "the HTTP request that appended it"},
        "correlation_id": {"type": ["string", "null"], "description": "the larger piece of work it belongs to"},
        "causation_id": {"type": ["string", "null"], "description": "the event it reacts to (process manager)"},
        "actor": {"type": "string", "description": "who appended it: a token's name, or a process"},
    },
    "additionalProperties": True,
}
STREAM_ENTRY_FIELDS: Schema = {
    "type": "object",
    "description": "The stream entry's other fields, for people reading with redis-cli; the envelope, this"
    " message's payload, travels whole as JSON text in field `envelope`.",
    "properties": {
        "type": {"type": "string", "enum": list(EVENT_TYPES)},
        "stream_id": {"type": "string"},
        "version": {"type": "string", "pattern": "^[1-9][0-9]*$", "description": "the envelope's version"},
    },
    "required": ["type", "stream_id", "version"],
    "additionalProperties": False,
}
WEBHOOK_HEADERS: Schema = {
    "type": "object",
    "properties": {
        "webhook-id": {"type": "string", "pattern": r"^msg_[0-9a-f]{32}\.[0-9a-f]{32}$",
                       "description": "the same on every attempt of an event to an endpoint: deduplicate by it"},
        "webhook-timestamp": {"type": "string", "pattern": "^[0-9]+$", "description": "this attempt, Unix seconds"},
        "webhook-signature": {"type": "string", "pattern": "^v1,[A-Za-z0-9+/]+={0,2}$",
                              "description": "v1,base64(HMAC-SHA256(secret, `{id}.{timestamp}.{body}`))"},
        "content-type": {"const": "application/json"},
    },
    "required": ["webhook-id", "webhook-timestamp", "webhook-signature", "content-type"],
}  # fmt: skip


def context(event_type: str) -> str:
    """The bounded context an event type belongs to (events.py's unions)."""
    cls = EVENT_TYPES[event_type]
    return "orders" if cls in get_args(Event) else "inventory" if cls in get_args(InventoryEvent) else "customers"


def stream_ids(event_type: str) -> Schema:
    """The streams an event type is appended to (events.py: an order's id, `inventory:<SKU>`, `customer:<id>`)."""
    if context(event_type) == "orders":
        return {"type": "string", "format": "uuid", "description": "the order's stream: its id"}
    prefix = INVENTORY_PREFIX if context(event_type) == "inventory" else CUSTOMER_PREFIX
    return {"type": "string", "pattern": f"^{prefix}", "description": f"the stream {prefix}<id>"}


def envelope_schema(event_type: str) -> Schema:
    """A stream message: the envelope of one event of this type, its payload stored (personal data sealed)."""
    properties = {
        **ENVELOPE,
        "stream_id": stream_ids(event_type),
        **_typed(event_type),
        "metadata": {"$ref": REF + "Metadata"},
        "recorded_at": TIMESTAMP,
    }
    return _versioned(event_type, properties, "stored", f"The envelope of one {event_type}, as the relay publishes it.")


def webhook_schema(event_type: str) -> Schema:
    """A webhook message's body: Standard Webhooks' `{type, timestamp, data}` for one event of this type."""
    order_id = {"type": "string", "format": "uuid"} if context(event_type) == "orders" else {"type": "null"}
    data = {
        **ENVELOPE,
        "stream_id": stream_ids(event_type),
        "order_id": {**order_id, "description": "the order's id (its stream id) for an order's event, else null"},
        **_typed(event_type),
        "recorded_at": TIMESTAMP,
    }
    return {
        "type": "object",
        "description": f"A webhook delivery of one {event_type} (Standard Webhooks' body).",
        "properties": {
            "type": {"const": event_type, "description": "the event type (Standard Webhooks' event type)"},
            "timestamp": {**TIMESTAMP, "description": "when the event was recorded"},
            "data": _versioned(event_type, data, "opened", "The event: its envelope, its payload as an admin sees it."),
        },
        "required": ["type", "timestamp", "data"],
        "additionalProperties": False,
    }


def _typed(event_type: str) -> dict[str, Schema]:
    return {
        "type": {"const": event_type},
        "schema_version": {"enum": list(versions(event_type)), "description": "the payload's schema version"},
        "payload": {"type": "object", "description": "the payload, of the shape of its schema_version"},
    }


def _versioned(event_type: str, properties: dict[str, Any], form: Form, description: str) -> Schema:
    """An object of these properties whose payload has the schema of its schema_version."""
    refs = {v: {"$ref": REF + payload_name(event_type, v, form)} for v in versions(event_type)}
    schema: Schema = {"type": "object", "description": description, "properties": properties,
                      "required": list(properties), "additionalProperties": False}  # fmt: skip
    if len(refs) == 1:
        schema["properties"] = {**properties, "payload": refs[1]}
    else:
        schema["oneOf"] = [{"properties": {"schema_version": {"const": v}, "payload": ref}} for v, ref in refs.items()]
    return schema
