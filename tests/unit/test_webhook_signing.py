"""Webhook signatures as the Standard Webhooks reference library verifies them, and where a webhook
may point (no loopback, private, link-local or multicast address; link-local never)."""

from __future__ import annotations

import ipaddress
import json
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from workers.webhooks.signing import headers, new_secret
from workers.webhooks.urls import RefusedUrl, check_form, refusal


def test_the_reference_library_verifies_what_we_sign_and_refuses_a_tampered_body() -> None:
    secret = new_secret()
    body = json.dumps({"type": "OrderCreated", "data": {"order_id": "o-1"}}).encode()
    signed = headers(secret, "evt_1", int(time.time()), body)
    assert Webhook(secret).verify(body, signed) == {"type": "OrderCreated", "data": {"order_id": "o-1"}}
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace(b"o-1", b"o-2"), signed)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, signed)
    assert secret.startswith("whsec_")


@pytest.mark.parametrize(
    ("address", "private_allowed"),
    [
        ("127.0.0.1", True), ("10.1.2.3", True), ("192.168.0.9", True), ("::1", True), ("fd00::1", True),
        ("169.254.169.254", False), ("fe80::1", False), ("224.0.0.1", False), ("0.0.0.0", False),
        ("::ffff:169.254.169.254", False), ("::ffff:127.0.0.1", True),
    ],
)  # fmt: skip
def test_internal_addresses_are_refused_and_link_local_even_when_private_ones_are_allowed(
    address: str, private_allowed: bool
) -> None:
    ip = ipaddress.ip_address(address)
    assert refusal(ip, allow_private=False) is not None
    assert (refusal(ip, allow_private=True) is None) is private_allowed
    assert refusal(ipaddress.ip_address("93.184.215.14"), allow_private=False) is None


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.org/x",
        "file:///etc/passwd",
        "http://user:pw@example.org/",
        "https:///nohost",
        "http://example.org:99999/",
    ],
)
def test_only_http_urls_with_a_host_and_no_credentials(url: str) -> None:
    with pytest.raises(RefusedUrl):
        check_form(url)
