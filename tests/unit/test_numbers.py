"""Numbers shown to a person (chalicelib/domain/numbers.py): bounds in refusals read as the docs
write them, never in `:g`'s exponent form (2.592e+06 for TokenMaxLifetimeSeconds' maximum)."""
import pytest

from chalicelib.domain.numbers import shown_number


@pytest.mark.parametrize("value, shown", [
    (0, "0"), (300, "300"), (1000, "1,000"), (2_592_000, "2,592,000"), (2_592_000.0, "2,592,000"),
    (-1500, "-1,500"), (0.5, "0.5"), (2.0, "2"), (1234.5, "1,234.5"), (1e-7, "0.0000001"),
    (1e16, "10,000,000,000,000,000"),
])
def test_a_number_is_shown_whole_with_thousands_separators_or_plainly(value, shown):
    assert shown_number(value) == shown
