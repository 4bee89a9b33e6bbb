"""Money (app/eventlog/money.py): exact decimal strings, the currency's decimal places, the limits."""

from __future__ import annotations

from decimal import Decimal

import pytest

from app.eventlog.money import (
    AMOUNT_LIMIT,
    ISO_4217,
    MAX_DECIMALS,
    MAX_INTEGER_DIGITS,
    InvalidAmount,
    format_amount,
    minor_units,
    parse_amount,
)


@pytest.mark.parametrize(
    ("currency", "places"),
    [("EUR", 2), ("USD", 2), ("JPY", 0), ("KRW", 0), ("BHD", 3), ("KWD", 3), ("CLF", 4), ("UYW", 4)],
)
def test_each_currency_has_its_iso_4217_decimal_places(currency: str, places: int) -> None:
    assert currency in ISO_4217
    assert minor_units(currency) == places


@pytest.mark.parametrize(
    ("text", "currency", "amount"),
    [
        ("12.50", "EUR", Decimal("12.50")),
        ("0", "EUR", Decimal(0)),
        ("0.01", "EUR", Decimal("0.01")),
        ("7", "JPY", Decimal(7)),
        ("1.234", "BHD", Decimal("1.234")),
        ("0.0001", "CLF", Decimal("0.0001")),
        ("9" * MAX_INTEGER_DIGITS + ".99", "EUR", AMOUNT_LIMIT - Decimal("0.01")),
    ],
)
def test_given_a_plain_decimal_string_then_the_exact_amount(text: str, currency: str, amount: Decimal) -> None:
    parsed = parse_amount(text, currency)
    assert parsed == amount and isinstance(parsed, Decimal)
    assert str(parsed) == text  # exact: no float went through, the written places are kept


@pytest.mark.parametrize(
    ("text", "currency", "why"),
    [
        ("1.999", "EUR", "EUR allows 2 decimal places, '1.999' has 3"),
        ("1.5", "JPY", "JPY allows 0 decimal places, '1.5' has 1"),
        ("1.0000", "BHD", "BHD allows 3 decimal places"),
    ],
)
def test_given_more_decimals_than_the_currency_has_then_refused_naming_both(text: str, currency: str, why: str) -> None:
    with pytest.raises(InvalidAmount, match=why):
        parse_amount(text, currency)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "-1.00",
        "+1.00",
        "1e3",
        "1E3",
        "01.00",
        "1.",
        ".5",
        " 1.00",
        "1.00 ",
        "1.00\n",
        "1,00",
        "1_000",
        "NaN",
        "Infinity",
        "١٢",  # Arabic-Indic digits: Decimal() would take them
        "1" + "0" * MAX_INTEGER_DIGITS,  # at the limit: one digit too many
        "1." + "0" * (MAX_DECIMALS + 1),
    ],
)
def test_given_anything_but_a_plain_non_negative_decimal_string_then_refused(text: str) -> None:
    with pytest.raises(InvalidAmount, match="is not a decimal string"):
        parse_amount(text, "CLF")  # four places: only the shape can refuse these


@pytest.mark.parametrize("value", [12.5, 12, None, Decimal("12.50")])
def test_given_a_number_instead_of_a_string_then_refused(value: object) -> None:
    """JSON numbers are floats to most clients: an amount is only ever a string."""
    with pytest.raises(InvalidAmount):
        parse_amount(value, "EUR")  # type: ignore[arg-type]


def test_the_message_of_a_refusal_is_bounded() -> None:
    with pytest.raises(InvalidAmount) as refused:
        parse_amount("x" * 10_000, "EUR")
    assert len(str(refused.value)) < 200


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [
        (Decimal("12.5"), "EUR", "12.50"),
        (Decimal(3), "EUR", "3.00"),
        (Decimal(0), "EUR", "0.00"),
        (Decimal(7), "JPY", "7"),
        (Decimal("1.2"), "BHD", "1.200"),
        (Decimal("0.5"), "CLF", "0.5000"),
        (AMOUNT_LIMIT - Decimal("0.01"), "EUR", "9" * MAX_INTEGER_DIGITS + ".99"),
    ],
)
def test_an_amount_is_written_with_exactly_the_currencys_places(amount: Decimal, currency: str, text: str) -> None:
    assert format_amount(amount, currency) == text


@pytest.mark.parametrize("text", ["0.01", "19.98", "999999999999.99"])
def test_what_is_written_reads_back_to_the_same_amount(text: str) -> None:
    assert format_amount(parse_amount(text, "EUR"), "EUR") == text


def test_every_amount_a_client_can_send_stays_below_the_limit() -> None:
    """The largest amount the pattern accepts is below AMOUNT_LIMIT (what a total must stay under)."""
    largest = parse_amount("9" * MAX_INTEGER_DIGITS + "." + "9" * MAX_DECIMALS, "CLF")
    assert largest < AMOUNT_LIMIT
