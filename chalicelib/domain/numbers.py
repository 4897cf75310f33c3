"""How a number is shown to a person: a bound in a refusal, as the docs write it."""
from __future__ import annotations

from decimal import Decimal


def shown_number(value: float) -> str:
    """`value` as the docs write numbers: a whole one with thousands separators (2,592,000, not
    2592000 nor 2.592e+06), any other plainly, without an exponent (0.5, 1,234.5, 0.0000001)."""
    number = float(value)
    if number.is_integer():
        return f"{int(number):,}"
    return f"{Decimal(repr(number)):,f}"


def length_rule(bound: str, chars: int, length: int, when: str = "") -> str:
    """The rule a text `length` characters long breaks: `bound` ("at least", "at most") `chars`
    characters, `when` a condition holds."""
    return (f"must be {bound} {shown_number(chars)} characters{' when ' + when if when else ''} "
            f"(it has {shown_number(length)})")
