"""Exact money: decimal strings in JSON, Decimal in Python, NUMERIC in PostgreSQL."""

from __future__ import annotations

import re
from decimal import Decimal

# ISO 4217 active codes. Minor units are 2 unless the currency is in one of the sets below.
ISO_4217 = frozenset(
    """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD BTN BWP
    BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR
    FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES
    KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR
    MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF
    SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS
    UAH UGX USD USN UYI UYU UYW UZS VED VES VND VUV WST XAF XCD XOF XPF YER ZAR ZMW ZWG
    """.split()
)
ZERO_DECIMAL = frozenset("BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF".split())
THREE_DECIMAL = frozenset("BHD IQD JOD KWD LYD OMR TND".split())
FOUR_DECIMAL = frozenset("CLF UYW".split())

MAX_INTEGER_DIGITS = 12
MAX_DECIMALS = 4
# Every amount a client sends: at most 12 digits before the point, 4 after (per currency, fewer).
AMOUNT_PATTERN = rf"(0|[1-9][0-9]{{0,{MAX_INTEGER_DIGITS - 1}}})(\.[0-9]{{1,{MAX_DECIMALS}}})?"
_AMOUNT = re.compile(AMOUNT_PATTERN)
# Anything that can be placed must be payable and refundable, so a total stays below this too.
AMOUNT_LIMIT = Decimal(10) ** MAX_INTEGER_DIGITS


class InvalidAmount(ValueError):
    """A string that is not an exact, non-negative amount in the given currency."""


def minor_units(currency: str) -> int:
    """Number of decimal places the currency allows."""
    if currency in ZERO_DECIMAL:
        return 0
    if currency in THREE_DECIMAL:
        return 3
    return 4 if currency in FOUR_DECIMAL else 2


def parse_amount(text: str, currency: str) -> Decimal:
    """Parse a decimal string such as "12.50" exactly, refusing more decimals than the currency has."""
    check_decimal_string(text)
    decimals = len(text.partition(".")[2])
    if decimals > minor_units(currency):
        raise InvalidAmount(f"{currency} allows {minor_units(currency)} decimal places, {text!r} has {decimals}")
    return Decimal(text)


def format_amount(value: Decimal, currency: str) -> str:
    """Render an amount with exactly the currency's number of decimal places."""
    return str(value.quantize(Decimal(1).scaleb(-minor_units(currency))))


def check_decimal_string(text: str) -> None:
    """Refuse anything but a plain non-negative decimal string (currency-independent check)."""
    if not isinstance(text, str) or _AMOUNT.fullmatch(text) is None:
        raise InvalidAmount(
            f'{str(text)[:40]!r} is not a decimal string such as "12.50" '
            f"(at most {MAX_INTEGER_DIGITS} digits before the point and {MAX_DECIMALS} after, no sign or exponent)"
        )
