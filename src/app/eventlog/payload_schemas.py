"""JSON Schemas of the event payloads, derived from the event dataclasses' type hints: the shapes the
codec (app/eventlog/codec.py) writes, for the AsyncAPI document (app/eventlog/asyncapi.py).

A payload has two forms. STORED is what the log, the streams and the events feed carry: personal data
sealed (`{subject, key_id, ciphertext}`, or null). OPENED is what the events API and the webhooks show
an admin (queries/personal.py `reveal`): the sealed field replaced by the personal fields and what
became of them. Payloads keep the schema version they were written with, so each version has its
schema: the current one without the fields that the upcasters from that version add (found by
upcasting an empty payload). An upcaster that does more than add fields fails that, loudly: its older
shape must then be written out here.
"""

from __future__ import annotations

import dataclasses
import enum
import types
from decimal import Decimal
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from app.eventlog.codec import UPCASTERS
from app.eventlog.events import EVENT_TYPES, SCHEMA_VERSIONS, PersonalData
from app.eventlog.money import AMOUNT_PATTERN

Schema = dict[str, Any]
Form = Literal["stored", "opened"]
FORMS: tuple[Form, ...] = ("stored", "opened")
REF = "#/components/schemas/"
SCALARS = {str: "string", int: "integer", bool: "boolean", float: "number"}
DECIMAL = {"type": "string", "pattern": f"^{AMOUNT_PATTERN}$", "description": "an exact decimal, as a string"}
# What became of personal data in the opened form: queries/personal.py's words (a test keeps them in step).
PERSONAL_DATA = ("shown", "withheld", "erased", "none")
PERSONAL_DATA_STATES = {
    "type": "string",
    "enum": list(PERSONAL_DATA),
    "description": "shown: here it is; withheld: this reader may not see it (a webhook, as an admin, always"
    " may); erased: the customer's data key was destroyed, nothing can open it again; none: there never was any",
}


def versions(event_type: str) -> range:
    """Every schema version of the event type, oldest first."""
    return range(1, SCHEMA_VERSIONS[event_type] + 1)


def fields_at(event_type: str, version: int) -> list[str]:
    """The payload's fields at a schema version: the current ones but those added by later upcasters."""
    added: set[str] = set()
    for step in range(version, SCHEMA_VERSIONS[event_type]):
        added |= UPCASTERS[(event_type, step)][1]({}).keys()
    return [f.name for f in dataclasses.fields(EVENT_TYPES[event_type]) if f.name not in added]


def payload_name(event_type: str, version: int, form: Form) -> str:
    """The component name of a payload schema; the opened form has its own only where it differs."""
    personal = any(_is_personal(get_type_hints(EVENT_TYPES[event_type])[f]) for f in fields_at(event_type, version))
    return f"{event_type}.v{version}" + (".opened" if form == "opened" and personal else "")


def payload_schemas() -> dict[str, Schema]:
    """Every payload schema (each event type at each schema version, in each form) and the objects
    they share (lines, the address, the sealed form), by component name."""
    shared: dict[str, Schema] = {}
    payloads = {
        payload_name(event_type, version, form): _object(cls, fields_at(event_type, version), form, shared)
        for event_type, cls in EVENT_TYPES.items()
        for version in versions(event_type)
        for form in FORMS
    }
    return {**payloads, **dict(sorted(shared.items()))}


def _object(cls: type[Any], names: list[str], form: Form, shared: dict[str, Schema]) -> Schema:
    hints = get_type_hints(cls)
    properties: dict[str, Schema] = {}
    for name in names:
        if form == "opened" and _is_personal(hints[name]):
            opened = get_type_hints(PersonalData)
            properties |= {field: _schema(hint, shared) for field, hint in opened.items()}
            properties["personal_data"] = PERSONAL_DATA_STATES
        else:
            properties[name] = _schema(hints[name], shared)
    return {
        "type": "object",
        "description": " ".join((cls.__doc__ or "").split()),
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def _schema(hint: Any, shared: dict[str, Schema]) -> Schema:
    """The JSON Schema of a value of this type, as the codec writes it (nested dataclasses by reference)."""
    if hint in SCALARS:
        return {"type": SCALARS[hint]}
    if hint is Decimal:
        return dict(DECIMAL)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return {"enum": [member.value for member in hint]}
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if hint.__name__ not in shared:
            shared[hint.__name__] = {}  # taken before its fields, which may refer to it again
            shared[hint.__name__] = _object(hint, [f.name for f in dataclasses.fields(hint)], "stored", shared)
        return {"$ref": REF + hint.__name__}
    if get_origin(hint) is tuple:  # tuple[X, ...]
        return {"type": "array", "items": _schema(get_args(hint)[0], shared)}
    if get_origin(hint) in (Union, types.UnionType):
        return _union(get_args(hint), shared)
    raise TypeError(f"no JSON Schema for {hint!r}: teach app/eventlog/payload_schemas.py its encoding")


def _union(members: tuple[Any, ...], shared: dict[str, Schema]) -> Schema:
    # PersonalData is never written: the codec seals it first (to_payload), so its stored form is Sealed.
    alternatives = [_schema(m, shared) for m in members if m not in (type(None), PersonalData)]
    if type(None) not in members:
        return alternatives[0] if len(alternatives) == 1 else {"oneOf": alternatives}
    if len(alternatives) == 1 and isinstance(alternatives[0].get("type"), str):
        return {**alternatives[0], "type": [alternatives[0]["type"], "null"]}
    return {"oneOf": [*alternatives, {"type": "null"}]}


def _is_personal(hint: Any) -> bool:
    return PersonalData in get_args(hint)
