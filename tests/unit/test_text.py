"""Text as the pipeline stores it (chalicelib/domain/text.py): lone surrogates found at any
depth, in keys too, and replaced one for one in an error's text."""
import pytest

from chalicelib.domain.errors import ProgressRejectedError
from chalicelib.domain.job import JobErrorInfo
from chalicelib.domain.progress import check_report
from chalicelib.domain.text import holds_lone_surrogate, is_unicode, unicode_data, unicode_text


@pytest.mark.parametrize("value", ["\ud800", "a\udfff", {"\udc80": 1}, [[{"k": ["x", "\ud83d"]}]], ("\ude00",)])
def test_a_lone_surrogate_is_found_wherever_it_stands(value):
    assert holds_lone_surrogate(value)


@pytest.mark.parametrize("value", ["😀", "e\u0301", "\u0000\x7f\ufffd\U0010ffff", {"😀": ["שלום"]}, 1, None, [1.5, True]])
def test_unicode_text_is_not_taken_for_a_lone_surrogate(value):
    assert not holds_lone_surrogate(value)


def test_a_deep_value_is_walked_without_recursion():
    value = "\ud800"
    for _ in range(5_000):
        value = [value]
    assert holds_lone_surrogate(value)


def test_each_lone_surrogate_becomes_u_fffd_and_nothing_else_changes():
    assert unicode_text("a\udcff😀\ud800\u0000") == "a\ufffd😀\ufffd\u0000"
    assert is_unicode(unicode_text("\ud83d\ude00"))  # two lone halves stay two characters


def test_unicode_data_replaces_lone_surrogates_in_every_string_keys_included():
    data = {"scope": "a\ud800", "\udcffk": ["x\ud800", ("y", 1, None)], "n": 2.5, "ok": True}
    assert unicode_data(data) == {"scope": "a\ufffd", "\ufffdk": ["x\ufffd", ["y", 1, None]], "n": 2.5, "ok": True}
    assert not holds_lone_surrogate(unicode_data(data))


def test_an_errors_text_is_kept_with_u_fffd_in_place_of_a_lone_surrogate():
    error = JobErrorInfo(code="bad\udcff", message="read \udcff\udcfe")
    assert (error.code, error.message) == ("bad\ufffd", "read \ufffd\ufffd")
    assert error.model_copy(update={}).model_dump_json()  # encodable


@pytest.mark.parametrize("report", [("\ud800", None, None), (None, "a\udcff", None), (None, None, {"k": "\ud800"}),
                                    (None, None, {"\ud800": 1})])
def test_a_progress_report_holding_a_lone_surrogate_is_refused_naming_it(report):
    with pytest.raises(ProgressRejectedError, match="lone surrogate"):
        check_report(*report)
