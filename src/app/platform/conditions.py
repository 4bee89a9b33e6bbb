"""Conditional requests (RFC 9110 §13): entity tags as If-Match and If-None-Match carry them.

An order's entity tag is its version ("3"). Parsing is strict: a header that is not `*` or a list
of quoted entity tags is a 400, not guessed at. If-Match compares strongly (a weak tag never
matches); If-None-Match weakly. A list matches when any of its tags does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import marshmallow as ma

# An element of a list of entity tags: optional W/, a quoted tag of etagc characters, then a comma
# or the end. Empty elements (", ,") are allowed by the list syntax of RFC 9110 §5.6.1.
_ELEMENT = re.compile(r'[ \t]*(?:(W/)?"([\x21\x23-\x7e\x80-\xff]*)")?[ \t]*(,|\Z)')
MAX_VERSION_DIGITS = 9


@dataclass(frozen=True)
class EntityTags:
    star: bool
    strong: frozenset[str] = frozenset()
    weak: frozenset[str] = frozenset()

    def versions(self) -> frozenset[int]:
        """The order versions the strong tags name: exactly as we write them ("3", never "03": strong
        comparison is character by character); a tag that is no version of ours names none."""
        return frozenset(int(tag) for tag in self.strong if _is_version(tag))

    def matches_strongly(self, version: int) -> bool:
        return self.star or str(version) in self.strong

    def matches_weakly(self, version: int) -> bool:
        return self.star or str(version) in self.strong or str(version) in self.weak


_VERSION = re.compile(rf"0|[1-9][0-9]{{0,{MAX_VERSION_DIGITS - 1}}}")


def _is_version(tag: str) -> bool:
    return _VERSION.fullmatch(tag) is not None


def parse_entity_tags(value: str) -> EntityTags:
    """`*` or a comma-separated list of entity tags; ValueError for anything else."""
    if value.strip(" \t") == "*":
        return EntityTags(star=True)
    strong: set[str] = set()
    weak: set[str] = set()
    position = 0
    while True:
        element = _ELEMENT.match(value, position)
        if element is None:
            raise ValueError("not a list of entity tags")
        if element.group(2) is not None:
            (weak if element.group(1) else strong).add(element.group(2))
        position = element.end()
        if element.group(3) != ",":
            break
    if not strong and not weak:
        raise ValueError("no entity tag")
    return EntityTags(star=False, strong=frozenset(strong), weak=frozenset(weak))


class EntityTagsField(ma.fields.Field):  # type: ignore[type-arg]
    """A header holding `*` or entity tags, loaded as EntityTags (documented as a string)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.metadata = {"type": "string", **self.metadata}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> EntityTags:
        if not isinstance(value, str):
            raise ma.ValidationError("must be a string")
        try:
            return parse_entity_tags(value)
        except ValueError as exc:
            raise ma.ValidationError('must be * or a list of entity tags such as "3" or "3", "4"') from exc


def describe(tags: EntityTags) -> str:
    """The tags as a client sent them, for an error message."""
    shown = [f'"{t}"' for t in sorted(tags.strong)] + [f'W/"{t}"' for t in sorted(tags.weak)]
    return ", ".join(shown)[:200]
