"""Standard Webhooks signatures (https://www.standardwebhooks.com): what the reference library
(`standardwebhooks`) verifies.

The secret is `whsec_` + base64 of 32 random bytes. Each message carries `webhook-id` (the same on
every attempt: receivers deduplicate by it), `webhook-timestamp` (seconds, of this attempt) and
`webhook-signature`: `v1,` + base64(HMAC-SHA256(secret, "{id}.{timestamp}.{body}")).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

PREFIX = "whsec_"


def new_secret() -> str:
    return PREFIX + base64.b64encode(os.urandom(32)).decode()


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix(PREFIX))
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def headers(secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, message_id, timestamp, body),
        "content-type": "application/json",
    }
