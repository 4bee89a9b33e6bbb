"""The AsyncAPI 3.0 document (GET /asyncapi.json): the events orderstream publishes, on its Redis
streams and as webhooks, generated from the event catalogue (events.py, codec.py's upcasters,
catalogue.py) like docs/events.md and the OpenAPI document's x-event-catalogue, never by hand.
"""

from __future__ import annotations

from typing import Any

from app.eventlog.catalogue import catalogue
from app.eventlog.events import EVENT_TYPES
from app.eventlog.message_schemas import (
    METADATA,
    STREAM_ENTRY_FIELDS,
    WEBHOOK_HEADERS,
    context,
    envelope_schema,
    webhook_schema,
)
from app.eventlog.payload_schemas import REF, payload_schemas

DESCRIPTION = """Every event orderstream records, as it leaves the service: on the **Redis streams** (one
entry per event, published by the relay from the outbox after its transaction committed) and as
**webhooks** (one signed POST per event and registered endpoint).

Delivery is at least once on both: recognise a repeat by `event_id`, or by `(stream_id, version)`.
The events of one stream (an order, a SKU's stock, a customer) keep their order: `version` rises by
one; `position` orders the whole log, with gaps.

A payload keeps the schema version it was written with; each version's schema is listed, and
orderstream's readers upcast older ones (what each upcaster adds is in the message's description).
Personal data travels sealed on the streams (`{subject, key_id, ciphertext}`, AES-256-GCM under the
customer's data key) and opened in webhooks, until the customer's data is erased.

The HTTP API: [/docs](/docs) ([OpenAPI](/openapi.json)); the event catalogue: docs/events.md."""

SIGNATURE = """[Standard Webhooks](https://www.standardwebhooks.com) v1, which its reference libraries
verify: the endpoint's secret (`whsec_` + base64 of 32 random bytes, shown once when it is registered)
signs `{webhook-id}.{webhook-timestamp}.{body}` with HMAC-SHA256; `webhook-signature` is `v1,` + the
base64 digest. Compare in constant time, and refuse a timestamp far from now (replays)."""
SIGNATURE_SCHEME = {"type": "httpApiKey", "in": "header", "name": "webhook-signature", "description": SIGNATURE}


SERVERS = {
    "redis": {
        "host": "{redis}",
        "protocol": "redis",
        "description": "The Redis that carries the streams: REDIS_URL, or ORDERSTREAM_STREAMS_REDIS_URL (a Redis"
        " Cluster with ORDERSTREAM_STREAMS_CLUSTER=1: partitions have keys of their own, so they spread over slots).",
        "variables": {"redis": {"default": "localhost:6379", "description": "host:port of that Redis"}},
    },
    "receiver": {
        "host": "{receiver}",
        "protocol": "https",
        "description": "Each webhook endpoint registered with POST /admin/webhooks, at its URL (http(s), a public"
        " address; redirects are not followed).",
        "variables": {"receiver": {"default": "erp.example.com", "description": "the endpoint URL's host"}},
    },
}


def asyncapi(key_prefix: str, partitions: int) -> dict[str, Any]:
    """The AsyncAPI document of this deployment's streams (ORDERSTREAM_KEY_PREFIX, ..._STREAM_PARTITIONS)."""
    described = catalogue()
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "orderstream events", "version": "1", "description": DESCRIPTION},
        "defaultContentType": "application/json",
        "servers": SERVERS,
        "channels": {"events": _events_channel(key_prefix, partitions), "webhooks": _webhooks_channel()},
        "operations": _operations(),
        "components": {
            "messages": {
                **{name: _stream_message(name, entry) for name, entry in described.items()},
                **{f"{name}.webhook": _webhook_message(name, entry) for name, entry in described.items()},
            },
            "schemas": {
                **{f"{name}.envelope": envelope_schema(name) for name in EVENT_TYPES},
                **{f"{name}.webhook": webhook_schema(name) for name in EVENT_TYPES},
                **payload_schemas(),
                "Metadata": METADATA,
                "StreamEntryFields": STREAM_ENTRY_FIELDS,
                "WebhookHeaders": WEBHOOK_HEADERS,
            },
            "securitySchemes": {"webhookSignature": SIGNATURE_SCHEME},
        },
    }


def _events_channel(key_prefix: str, partitions: int) -> dict[str, Any]:
    return {
        "address": f"{key_prefix}:events:{{partition}}",
        "title": "Event streams",
        "description": f"""{partitions} Redis streams (ORDERSTREAM_STREAM_PARTITIONS), keys prefixed with
ORDERSTREAM_KEY_PREFIX (here `{key_prefix}`). An aggregate stream's events all go to one partition,
`crc32(stream_id as UTF-8) mod {partitions}` (zlib's CRC-32, as app/eventlog/streams.py `partition_of`), so they
stay in order there; changing the number of partitions re-maps streams. Read with a consumer group of your own
(XREADGROUP, XACK): entries are trimmed only behind every group's acknowledged position.""",
        "servers": [{"$ref": "#/servers/redis"}],
        "parameters": {
            "partition": {
                "enum": [str(n) for n in range(partitions)],
                "description": "the partition: crc32(stream_id) mod ORDERSTREAM_STREAM_PARTITIONS",
            }
        },
        "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in EVENT_TYPES},
    }


def _webhooks_channel() -> dict[str, Any]:
    return {
        "address": None,  # each endpoint's own URL
        "title": "Webhook deliveries",
        "description": "A POST to each enabled endpoint of each event of the types it subscribed to. 2xx: delivered;"
        " 5xx, 429 and network errors: retried with backoff (ORDERSTREAM_WEBHOOKS_BACKOFF_S) under the same"
        " webhook-id; another answer: failed. The events of one stream reach an endpoint in version order (one"
        " failed for good holds the rest back no longer); an endpoint failing for ORDERSTREAM_WEBHOOKS_DISABLE_AFTER_S"
        " is disabled.",
        "servers": [{"$ref": "#/servers/receiver"}],
        "messages": {f"{name}.webhook": {"$ref": f"#/components/messages/{name}.webhook"} for name in EVENT_TYPES},
    }


def _operations() -> dict[str, Any]:
    return {
        "publishEvents": {
            "action": "send",
            "channel": {"$ref": "#/channels/events"},
            "summary": "The relay appends each committed event to its partition's stream (XADD), at least once.",
            "messages": [{"$ref": f"#/channels/events/messages/{name}"} for name in EVENT_TYPES],
        },
        "sendWebhooks": {
            "action": "send",
            "channel": {"$ref": "#/channels/webhooks"},
            "summary": "Each event POSTed to every enabled endpoint subscribed to its type, signed.",
            "security": [{"$ref": "#/components/securitySchemes/webhookSignature"}],
            "bindings": {"http": {"method": "POST", "bindingVersion": "0.3.0"}},
            "messages": [{"$ref": f"#/channels/webhooks/messages/{name}.webhook"} for name in EVENT_TYPES],
        },
    }


def _stream_message(name: str, entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "title": name,
        "description": _versions_text(entry),
        "contentType": "application/json",
        "headers": {"$ref": REF + "StreamEntryFields"},
        "payload": {"$ref": REF + f"{name}.envelope"},
        "tags": [{"name": context(name)}],
    }


def _webhook_message(name: str, entry: dict[str, Any]) -> dict[str, Any]:
    return {
        **_stream_message(name, entry),
        "name": f"{name}.webhook",
        "title": f"{name} (webhook)",
        "headers": {"$ref": REF + "WebhookHeaders"},
        "payload": {"$ref": REF + f"{name}.webhook"},
    }


def _versions_text(entry: dict[str, Any]) -> str:
    text = " ".join(entry["summary"].split())
    steps = "".join(f"\n\nSchema version {step}: {change}." for step, change in entry["upcasters"].items())
    return f"{text}\n\nCurrent schema version: {entry['schema_version']}.{steps}"
