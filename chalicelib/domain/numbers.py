"""How a number is shown to a person (a bound in a refusal, as the docs write it), and how one
given as text (a query parameter) is read."""
from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BeforeValidator

_DIGITS = re.compile(r"-?0*([0-9]{1,18})")  # leading zeros are not the number's digits
_MANY_DIGITS = re.compile(r"-?[0-9]+")


def _whole_number(value: Any) -> Any:
    """A text of ASCII digits (an optional minus) as its int; any other text refused. pydantic's
    own reading of a text as an int takes "1_0" as 10, " 1 ", "+1", "1.0" and digits of other
    scripts: a parameter no client meant. A number (a stored task's parameters) passes on to
    the field's own checks; a bool is refused (JSON's true is no 1)."""
    if isinstance(value, bool):
        raise ValueError("must be a whole number, not true or false")
    if isinstance(value, str):
        if (match := _DIGITS.fullmatch(value)) is not None:  # int() would count the zeros against its limit
            number = int(match.group(1))
            return -number if value.startswith("-") else number
        if _MANY_DIGITS.fullmatch(value) is not None:  # beyond any bound: refused without reading it
            raise ValueError("must be a whole number of at most 18 digits")
        raise ValueError("must be a whole number written in the digits 0-9")
    return value


# An int field read from a query string (or from the parameters it was once given).
WholeNumber = Annotated[int, BeforeValidator(_whole_number)]


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
