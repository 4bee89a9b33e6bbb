"""The event catalogue: every event type, its fields and schema version, described for readers outside
this code base (the OpenAPI document's x-event-catalogue, and docs/events.md)."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any, get_args, get_origin, get_type_hints

from app.eventlog.codec import UPCASTERS
from app.eventlog.events import EVENT_TYPES, SCHEMA_VERSIONS, PersonalData, Sealed


def catalogue() -> dict[str, Any]:
    """A description of every event type and its current schema version, for the API docs."""
    return {
        name: {
            "schema_version": SCHEMA_VERSIONS[name],
            "summary": (cls.__doc__ or "").strip(),
            "fields": {f.name: _describe(hint) for f, hint in _fields_with_hints(cls)},
            "upcasters": {
                f"{version} -> {version + 1}": UPCASTERS[(name, version)][0]
                for version in range(1, SCHEMA_VERSIONS[name])
            },
        }
        for name, cls in EVENT_TYPES.items()
    }


def _fields_with_hints(cls: type[Any]) -> list[tuple[dataclasses.Field[Any], Any]]:
    hints = get_type_hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls)]


def _describe(hint: Any) -> str:
    if get_origin(hint) is tuple and not dataclasses.is_dataclass(get_args(hint)[0]):
        return f"array of {_describe(get_args(hint)[0])}"
    if get_origin(hint) is tuple:  # lines: tuple[SomeLine, ...]
        item = get_args(hint)[0]
        described = (f"{name}: {_describe(field)}" for name, field in get_type_hints(item).items())
        return "array of {" + ", ".join(described) + "}"
    if hint in (Decimal, Decimal | None):
        return "decimal string" + (" or null" if hint != Decimal else "")
    if hint == PersonalData | Sealed | None:
        return (
            "null, or personal data sealed under the customer's data key: {subject: string, key_id: string,"
            " ciphertext: base64 of AES-256-GCM(JSON {email, shipping_address})}"
        )
    return {str: "string", int: "integer"}.get(hint, str(hint))


def catalogue_markdown() -> str:
    """The catalogue as the Markdown page docs/events.md (kept in step by a test)."""
    lines = [
        "# Event catalogue",
        "",
        "Generated from `src/app/eventlog/events.py` by `orderstream catalogue`; a test fails when it is stale.",
        "Payloads are JSON; money is a decimal string. Stored events keep the schema version they were",
        "written with; readers upcast older versions on the fly (the log is never rewritten).",
        "",
    ]
    for name, entry in catalogue().items():
        lines += [f"## {name} (schema version {entry['schema_version']})", "", entry["summary"], ""]
        lines += ["| field | type |", "|---|---|"]
        lines += [f"| `{field}` | {kind} |" for field, kind in entry["fields"].items()]
        for step, change in entry["upcasters"].items():
            lines += ["", f"Upcaster {step}: {change}."]
        lines.append("")
    return "\n".join(lines)
