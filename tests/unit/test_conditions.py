"""Entity tags (app/platform/conditions.py): what If-Match and If-None-Match carry, parsed strictly
(RFC 9110 §8.8.3, §13.1): `*` or a list of quoted tags; anything else is refused, not guessed at."""

from __future__ import annotations

import marshmallow as ma
import pytest

from app.platform.conditions import EntityTags, EntityTagsField, describe, parse_entity_tags


@pytest.mark.parametrize(
    ("header", "tags"),
    [
        ("*", EntityTags(star=True)),
        (" * ", EntityTags(star=True)),
        ('"3"', EntityTags(star=False, strong=frozenset({"3"}))),
        ('W/"3"', EntityTags(star=False, weak=frozenset({"3"}))),
        ('"3", "4"', EntityTags(star=False, strong=frozenset({"3", "4"}))),
        ('"3",W/"4"', EntityTags(star=False, strong=frozenset({"3"}), weak=frozenset({"4"}))),
        ('"3", , "4"', EntityTags(star=False, strong=frozenset({"3", "4"}))),  # empty list elements are allowed
        ('\t"3"\t', EntityTags(star=False, strong=frozenset({"3"}))),
        ('""', EntityTags(star=False, strong=frozenset({""}))),
        ('"abc"', EntityTags(star=False, strong=frozenset({"abc"}))),
    ],
)
def test_given_a_valid_header_then_its_tags(header: str, tags: EntityTags) -> None:
    assert parse_entity_tags(header) == tags


@pytest.mark.parametrize(
    "header",
    ["", " ", ",", "3", '"3', '3"', "W/3", 'w/"3"', '"3" "4"', '"3";"4"', '"a b"', '"a"b"', '*, "3"', '"3", *', "**"],
)
def test_given_anything_else_then_refused(header: str) -> None:
    with pytest.raises(ValueError):
        parse_entity_tags(header)


@pytest.mark.parametrize(
    ("header", "versions"),
    [
        ('"3"', {3}),
        ('"0"', {0}),
        ('"3", "12"', {3, 12}),
        ('"03"', set()),  # strong comparison is character by character: we never write "03"
        ('"-1"', set()),
        ('"1e3"', set()),
        ('"abc"', set()),
        ('W/"3"', set()),  # a weak tag names no version for If-Match
        ('"1234567890"', set()),  # more digits than a version of ours has
        ('"123456789"', {123456789}),
    ],
)
def test_the_versions_a_header_names_are_its_strong_tags_written_as_we_write_them(
    header: str, versions: set[int]
) -> None:
    assert parse_entity_tags(header).versions() == versions


@pytest.mark.parametrize(
    ("header", "version", "strongly", "weakly"),
    [
        ('"3"', 3, True, True),
        ('"3"', 4, False, False),
        ('W/"3"', 3, False, True),  # If-Match never matches a weak tag; If-None-Match does
        ('"2", "3"', 3, True, True),
        ("*", 7, True, True),
    ],
)
def test_matching_is_strong_for_if_match_and_weak_for_if_none_match(
    header: str, version: int, strongly: bool, weakly: bool
) -> None:
    tags = parse_entity_tags(header)
    assert (tags.matches_strongly(version), tags.matches_weakly(version)) == (strongly, weakly)


def test_a_header_is_described_back_as_the_client_sent_it_within_bounds() -> None:
    assert describe(parse_entity_tags('W/"9", "3", "10"')) == '"10", "3", W/"9"'
    assert len(describe(parse_entity_tags(", ".join(f'"{n}"' for n in range(1000))))) == 200


class Conditional(ma.Schema):
    if_match = EntityTagsField(data_key="If-Match")


def test_as_a_schema_field_a_bad_header_is_a_validation_error_with_an_example() -> None:
    assert Conditional().load({"If-Match": '"3"'}) == {"if_match": EntityTags(star=False, strong=frozenset({"3"}))}
    with pytest.raises(ma.ValidationError) as refused:
        Conditional().load({"If-Match": "3"})
    assert refused.value.messages == {"If-Match": ['must be * or a list of entity tags such as "3" or "3", "4"']}
    with pytest.raises(ma.ValidationError, match="must be a string"):
        Conditional().load({"If-Match": 3})
