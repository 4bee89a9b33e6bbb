"""Whole numbers in a query or a path (app/platform/parameters.py): ASCII digits and nothing more.
Python's int() would take "1_0", " 1 ", "1\\n" or other scripts' digits; we refuse them (422, 404)."""

from __future__ import annotations

import marshmallow as ma
import pytest
from flask import Flask
from werkzeug.exceptions import NotFound, UnprocessableEntity
from werkzeug.routing import Map, Rule

from app.platform.parameters import AsciiIntegerConverter, Parser


class Page(ma.Schema):
    page = ma.fields.Integer()
    q = ma.fields.String()


def parse(query: str) -> dict[str, object]:
    """What the API's parser makes of a query string, as a view receives it."""
    with Flask(__name__).test_request_context(f"/?{query}"):
        return dict(Parser().parse(Page, location="query"))


@pytest.mark.parametrize(
    ("query", "parsed"),
    [("page=10", {"page": 10}), ("page=-3", {"page": -3}), ("page=0", {"page": 0}), ("q=1_0", {"q": "1_0"}), ("", {})],
)
def test_given_ascii_digits_then_the_number(query: str, parsed: dict[str, object]) -> None:
    assert parse(query) == parsed


@pytest.mark.parametrize(
    "query",
    [
        "page=1_0",
        "page=%201",
        "page=1%20",
        "page=1%0A",
        "page=%2B1",
        "page=1.0",
        "page=1e3",
        "page=",
        "page=%D9%A1%D9%A2",  # Arabic-Indic "12"
        "page=%EF%BC%91",  # fullwidth "1"
        "page=1234567890123456789",  # 19 digits: beyond what any parameter takes
        "page=1&page=x",
    ],
)
def test_given_anything_else_then_422_not_a_valid_integer(query: str) -> None:
    with pytest.raises(UnprocessableEntity) as refused:
        parse(query)
    assert refused.value.data["messages"] == {"query": {"page": ["Not a valid integer."]}}  # type: ignore[attr-defined]


def match(path: str) -> dict[str, object]:
    urls = Map([Rule("/pages/<int:n>", endpoint="page")], converters={"int": AsciiIntegerConverter})
    return urls.bind("localhost").match(path)[1]


@pytest.mark.parametrize(("path", "n"), [("/pages/0", 0), ("/pages/42", 42), ("/pages/" + "9" * 18, int("9" * 18))])
def test_an_integer_in_a_path_is_ascii_digits(path: str, n: int) -> None:
    assert match(path) == {"n": n}


@pytest.mark.parametrize("path", ["/pages/١٢", "/pages/\uff11", "/pages/-1", "/pages/1_0", "/pages/" + "9" * 19])
def test_anything_else_in_a_path_is_no_such_page(path: str) -> None:
    with pytest.raises(NotFound):
        match(path)
