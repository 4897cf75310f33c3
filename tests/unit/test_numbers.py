"""Numbers shown to a person (chalicelib/domain/numbers.py): bounds in refusals read as the docs
write them, never in `:g`'s exponent form (2.592e+06 for TokenMaxLifetimeSeconds' maximum)."""
import pytest

from pydantic import BaseModel, ValidationError

from chalicelib.domain.numbers import WholeNumber, shown_number


@pytest.mark.parametrize("value, shown", [
    (0, "0"), (300, "300"), (1000, "1,000"), (2_592_000, "2,592,000"), (2_592_000.0, "2,592,000"),
    (-1500, "-1,500"), (0.5, "0.5"), (2.0, "2"), (1234.5, "1,234.5"), (1e-7, "0.0000001"),
    (1e16, "10,000,000,000,000,000"),
])
def test_a_number_is_shown_whole_with_thousands_separators_or_plainly(value, shown):
    assert shown_number(value) == shown


class _Page(BaseModel):
    limit: WholeNumber = 25


@pytest.mark.parametrize("given, read", [("7", 7), ("0007", 7), ("-0", 0), ("-12", -12), ("9" * 18, int("9" * 18)),
                                         ("0" * 30 + "5", 5), (42, 42)])
def test_a_whole_number_is_read_from_plain_digits_or_taken_as_a_number(given, read):
    assert _Page(limit=given).limit == read


@pytest.mark.parametrize("given, said", [
    (True, "not true or false"), (False, "not true or false"), ("1" * 19, "at most 18 digits"),
    ("-" + "1" * 19, "at most 18 digits"), ("1_0", "digits 0-9"), (" 1", "digits 0-9"), ("+1", "digits 0-9"),
    ("1.0", "digits 0-9"), ("\u0661", "digits 0-9"), ("", "digits 0-9"),
])
def test_anything_else_is_refused_saying_why(given, said):
    with pytest.raises(ValidationError, match=said):
        _Page(limit=given)
