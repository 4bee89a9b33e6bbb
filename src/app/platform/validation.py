"""Building blocks of every input schema, so that each rule about input is written once.

- Patterns match the whole value (`re.fullmatch`): `$` would also accept a trailing newline.
- Sizes and counts are checked before elements: a list of 16,000 items is refused for its length,
  not judged item by item into a megabyte of errors; a body with far more members than the schema
  has fields is refused as a whole.
- Identifiers that later appear in a URL path are limited to characters a path segment carries
  unchanged (and never start with a dot), so what we accept we can also serve.
"""

from __future__ import annotations

import re
from typing import Any

import marshmallow as ma
from marshmallow import validate

MAX_EXTRA_MEMBERS = 10  # unknown members reported one by one, beyond the schema's own fields
IDENTIFIER_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}"


class FullMatch(validate.Regexp):
    """A pattern the whole value must match (documented as ^...$ in OpenAPI, where JSON Schema's
    ECMA-262 `$` has no trailing-newline exception)."""

    def __init__(self, pattern: str, error: str | None = None) -> None:
        super().__init__(f"^(?:{pattern})$", error=error)
        self.full = re.compile(pattern)

    def __call__(self, value: Any) -> Any:
        if not isinstance(value, str) or self.full.fullmatch(value) is None:
            raise ma.ValidationError(self._format_error(value))
        return value


class BoundedList(ma.fields.List):  # type: ignore[type-arg]
    """A list whose length is checked before any of its elements is."""

    def __init__(self, cls_or_instance: Any, *, min_length: int, max_length: int, **kwargs: Any) -> None:
        super().__init__(cls_or_instance, validate=validate.Length(min_length, max_length), **kwargs)
        self.min_length, self.max_length = min_length, max_length

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, list | tuple) and not self.min_length <= len(value) <= self.max_length:
            raise ma.ValidationError(
                f"holds {len(value)} elements; between {self.min_length} and {self.max_length} are allowed"
            )
        return super()._deserialize(value, attr, data, **kwargs)


class StrictSchema(ma.Schema):
    """Unknown members are refused (marshmallow's default), but a body with many more members than
    the schema has fields is refused at once, with one error instead of one per member."""

    @ma.pre_load
    def _bounded_members(self, data: Any, **_kwargs: Any) -> Any:
        if isinstance(data, dict) and len(data) > len(self.load_fields) + MAX_EXTRA_MEMBERS:
            raise ma.ValidationError(
                f"holds {len(data)} members; this body has {len(self.load_fields)} fields", field_name="_schema"
            )
        return data


class EmptySchema(StrictSchema):
    """The body of a command that takes none: nothing, or `{}`; anything else is refused."""


def identifier(**kwargs: Any) -> ma.fields.String:
    """An identifier that appears in URL paths later (a customer id, say)."""
    return ma.fields.String(
        validate=FullMatch(
            IDENTIFIER_PATTERN,
            error="1-64 letters, digits, '.', '_', ':', '@' or '-', starting with a letter or digit",
        ),
        **kwargs,
    )


def text(max_length: int, **kwargs: Any) -> ma.fields.String:
    """Free text of 1 to max_length characters."""
    return ma.fields.String(validate=validate.Length(1, max_length), **kwargs)
