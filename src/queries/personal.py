"""Personal data in responses: opened from its sealed form only for a caller allowed to see it.

Projections keep personal data as the log holds it, sealed under the customer's data key; a response
opens it at the moment it is made, so an erasure shows everywhere at once, and a rebuilt projection
holds nothing more. Each shown record says what became of its personal data:
- `shown`: here it is (the caller is the customer, an admin, or a token granted personal data);
- `withheld`: it exists, and this caller may not see it;
- `erased`: the customer's data key was destroyed: nothing can open it again;
- `none`: there never was any.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection

from app.eventlog.events import PersonalData, Sealed
from app.eventlog.keys import Keyring
from app.eventlog.personal import to_json
from app.platform.auth import Principal

SHOWN, WITHHELD, ERASED, NONE = "shown", "withheld", "erased", "none"
FIELDS = ("email", "shipping_address")


def sealed(value: Any) -> Sealed | None:
    """A sealed value as a projection row or a payload holds it (JSON), or None."""
    return None if value is None else Sealed(value["subject"], value["key_id"], value["ciphertext"])


def reveal(conn: Connection | None, keyring: Keyring, principal: Principal, records: Sequence[dict[str, Any]],
           key: str = "personal") -> None:  # fmt: skip
    """Replace each record's `key` (sealed JSON, or None) with its personal fields and what became of
    them (`personal_data`), opening only what the caller may see (one query for all the records; no
    connection is needed when there is nothing the caller may open)."""
    items = [sealed(record.pop(key, None)) for record in records]
    visible = [s if s is not None and principal.may_see_personal_data_of(s.subject) else None for s in items]
    opened: list[PersonalData | None] = [None] * len(items)
    erased: set[str] = set()
    if any(items):
        assert conn is not None, "what became of personal data is known from its keys"
        opened = keyring.open_all(conn, visible)
        erased = keyring.destroyed(conn, (s.key_id for s, v in zip(items, visible, strict=True) if s and not v))
    for record, item, allowed, data in zip(records, items, visible, opened, strict=True):
        shown = to_json(data) if data is not None else dict.fromkeys(FIELDS)
        record.update(shown)
        if item is None:
            record["personal_data"] = NONE
        elif allowed is None:  # erased is no secret; the data is
            record["personal_data"] = ERASED if item.key_id in erased else WITHHELD
        else:
            record["personal_data"] = SHOWN if data is not None else ERASED
