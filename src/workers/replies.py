"""Redis replies as the workers read them: names and ids come as bytes (the clients do not decode),
or as str from a client that does; stream entries as (stream key, entry id, fields)."""

from __future__ import annotations

from typing import Any

from app.eventlog.streams import as_str

Entry = tuple[str, str, dict[Any, Any]]  # stream key, entry id, fields as Redis gave them (bytes)


def entries(response: Any) -> list[Entry]:
    """The entries of an XREADGROUP reply (or of [(key, claimed entries)]), in order."""
    return [(as_str(key), as_str(entry_id), fields) for key, batch in response or [] for entry_id, fields in batch]
