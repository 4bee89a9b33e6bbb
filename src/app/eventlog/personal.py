"""Sealing personal data: AES-256-GCM (pyca `cryptography`), pure functions over keys and bytes.

Each customer has a data key (32 random bytes). Personal data is sealed under it, with the customer
id and the key id as associated data, so a ciphertext moved to another customer or key fails to
open. Data keys are stored only wrapped (sealed) under the master key (ORDERSTREAM_MASTER_KEY), so
a copy of the database without the master key reads nothing; destroying a customer's data keys
makes every sealed copy of its data, wherever it went, unreadable for good. app/eventlog/keys.py
keeps the keys; the codec seals every PersonalData field on its way into the log.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from app.eventlog.events import Address, PersonalData, Sealed

NONCE_BYTES = 12  # AES-GCM's standard nonce; random per message (a key seals a handful of messages)


class InvalidMasterKey(ValueError):
    """ORDERSTREAM_MASTER_KEY is not 32 bytes of url-safe base64."""


class Unreadable(Exception):
    """A ciphertext that does not open under the key given (tampered, or the wrong key)."""


@dataclass(frozen=True)
class MasterKey:
    key: bytes

    @classmethod
    def parse(cls, text: str) -> MasterKey:
        try:
            key = base64.urlsafe_b64decode(text.strip().encode())
        except (binascii.Error, ValueError):
            key = b""
        if len(key) != 32:
            raise InvalidMasterKey("ORDERSTREAM_MASTER_KEY must be 32 random bytes in url-safe base64 (44 characters)")
        return cls(key)

    @property
    def id(self) -> str:
        """Names the master key a data key is wrapped with (a digest: it reveals nothing of the key)."""
        return hashlib.sha256(b"orderstream master key id:" + self.key).hexdigest()[:16]

    def wrap(self, key_id: str, data_key: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + AESGCM(self.key).encrypt(nonce, data_key, key_id.encode())

    def unwrap(self, key_id: str, wrapped: bytes) -> bytes:
        try:
            return AESGCM(self.key).decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], key_id.encode())
        except InvalidTag:
            raise Unreadable(f"data key {key_id} is not wrapped with master key {self.id}") from None


def new_master_key() -> str:
    """A fresh master key, as ORDERSTREAM_MASTER_KEY takes it."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def seal(data_key: bytes, key_id: str, subject: str, data: PersonalData) -> Sealed:
    plaintext = json.dumps(to_json(data), separators=(",", ":"), sort_keys=True).encode()
    nonce = os.urandom(NONCE_BYTES)
    ciphertext = nonce + AESGCM(data_key).encrypt(nonce, plaintext, _aad(subject, key_id))
    return Sealed(subject, key_id, base64.b64encode(ciphertext).decode())


def unseal(data_key: bytes, sealed: Sealed) -> PersonalData:
    raw = base64.b64decode(sealed.ciphertext)
    try:
        plaintext = AESGCM(data_key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], _aad(sealed.subject, sealed.key_id))
    except InvalidTag:
        raise Unreadable(f"sealed data of {sealed.subject} does not open under key {sealed.key_id}") from None
    return from_json(json.loads(plaintext))


def to_json(data: PersonalData) -> dict[str, Any]:
    address = data.shipping_address
    return {"email": data.email, "shipping_address": None if address is None else address.__dict__.copy()}


def from_json(value: dict[str, Any]) -> PersonalData:
    address = value.get("shipping_address")
    return PersonalData(value.get("email"), None if address is None else Address(**address))


def _aad(subject: str, key_id: str) -> bytes:
    return json.dumps([subject, key_id]).encode()
