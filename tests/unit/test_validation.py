"""Input building blocks (app/platform/validation.py): whole-value patterns, lists bounded before their
elements are judged, bodies with far too many members refused at once, path-safe identifiers."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
import pytest

from app.platform.validation import (
    MAX_EXTRA_MEMBERS,
    BoundedList,
    EmptySchema,
    FullMatch,
    StrictSchema,
    identifier,
    text,
)


class Sample(StrictSchema):
    customer_id = identifier(required=True)
    note = text(5)
    tags = BoundedList(ma.fields.String(validate=FullMatch("[a-z]+", error="lower-case letters")), min_length=1,
                       max_length=3)  # fmt: skip


def errors(body: Any, schema: ma.Schema | None = None) -> dict[str, Any]:
    try:
        (schema or Sample()).load(body)
    except ma.ValidationError as refused:
        return refused.normalized_messages()  # type: ignore[return-value]
    return {}


@pytest.mark.parametrize(
    "customer_id",
    ["c", "c-1", "A.b_c:d@e-f", "0", "x" * 64],
)
def test_given_a_path_safe_identifier_then_accepted(customer_id: str) -> None:
    assert errors({"customer_id": customer_id}) == {}


@pytest.mark.parametrize(
    "customer_id",
    ["", ".hidden", "-c", "c/1", "c 1", "c%2F1", "c\n", "é", "x" * 65, "c?", "c#"],
)
def test_given_anything_a_path_segment_would_change_then_refused(customer_id: str) -> None:
    assert list(errors({"customer_id": customer_id})) == ["customer_id"]


def test_a_pattern_matches_the_whole_value_not_up_to_a_trailing_newline() -> None:
    rule = FullMatch("[a-z]+", error="lower-case letters")
    assert rule("abc") == "abc"
    for value in ("abc\n", "ab1", "", 5):
        with pytest.raises(ma.ValidationError, match="lower-case letters"):
            rule(value)
    assert rule.regex.pattern == "^(?:[a-z]+)$"  # what OpenAPI shows: anchored, as JSON Schema reads it


@pytest.mark.parametrize(
    ("tags", "refusal"),
    [
        ([], "holds 0 elements; between 1 and 3 are allowed"),
        (["a", "b", "c", "d"], "holds 4 elements; between 1 and 3 are allowed"),
        (["x"] * 16_000, "holds 16000 elements; between 1 and 3 are allowed"),
    ],
)
def test_a_list_of_the_wrong_length_is_refused_as_a_whole(tags: list[str], refusal: str) -> None:
    """Given a list too long (or empty), then one error for its length, none per element."""
    assert errors({"customer_id": "c", "tags": [t.upper() for t in tags]}) == {"tags": [refusal]}


def test_a_list_of_the_right_length_has_its_elements_judged() -> None:
    assert errors({"customer_id": "c", "tags": ["ok", "NO"]}) == {"tags": {1: ["lower-case letters"]}}
    assert errors({"customer_id": "c", "tags": ["ok"]}) == {}


def test_unknown_members_are_refused_one_by_one_up_to_a_bound() -> None:
    extra = {f"x{n}": 1 for n in range(MAX_EXTRA_MEMBERS)}
    refused = errors({"customer_id": "c", **extra})
    assert refused == {name: ["Unknown field."] for name in extra}


def test_a_body_with_far_more_members_than_fields_is_refused_at_once() -> None:
    body = {"customer_id": "c", **{f"x{n}": 1 for n in range(5_000)}}
    assert errors(body) == {"_schema": ["holds 5001 members; this body has 3 fields"]}


@pytest.mark.parametrize(("note", "refused"), [("a", False), ("abcde", False), ("", True), ("abcdef", True)])
def test_free_text_has_one_to_max_characters(note: str, refused: bool) -> None:
    assert bool(errors({"customer_id": "c", "note": note})) is refused


@pytest.mark.parametrize(("body", "refused"), [({}, False), ({"reason": "x"}, True)])
def test_a_command_that_takes_no_body_accepts_nothing_or_an_empty_object(body: dict[str, Any], refused: bool) -> None:
    assert bool(errors(body, EmptySchema())) is refused
