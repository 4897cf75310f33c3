"""Request bodies read as JSON (chalicelib/api/json_body.py): integers up to the largest finite
double are kept exactly, one digit past it is refused, wherever the run of digits stands.

The look for such a run (`_LONG_DIGITS`) starts only where a run of digits starts, so it reads
each digit once; without that it read a run again from each of its digits, a body of 308-digit
integers costing 150 times its length. That cost is the regular expression's shape, read here,
not timed: timings belong to `make bench`."""
import sys

import pytest

from chalicelib.api.errors import InvalidJsonError
from chalicelib.api.json_body import _LONG_DIGITS, parse_json, read_json
from chalicelib.defaults import MAX_JSON_DEPTH
from chalicelib.domain.job import too_deep_message
from chalicelib.domain.text import NOT_UNICODE

NEAR = "1" * 308  # below the largest double (1.79e308), as long as an integer can be and stay so
LARGEST = int(sys.float_info.max)  # the largest double written as an integer: 309 digits


def test_a_body_of_integers_just_short_of_the_bound_is_kept_whole():
    body = "[" + ",".join([NEAR] * 1000) + "]"
    assert parse_json(body) == [int(NEAR)] * 1000


@pytest.mark.parametrize("text", ["[%s]" % ("9" * 309), '{"a": [1, %s]}' % ("1" * 400), "-%s" % ("2" * 309),
                                  "[%s]" % ("9" * 5000)])  # past Python's own 4,300-digit limit too
def test_an_integer_past_the_largest_double_is_refused_wherever_it_stands(text):
    with pytest.raises(InvalidJsonError, match="too large to be a finite double"):
        parse_json(text)


@pytest.mark.parametrize("number", [LARGEST, -LARGEST, 10 ** 308, -(10 ** 308), -int(NEAR)])
def test_an_integer_of_as_many_digits_as_the_largest_double_is_kept_up_to_it(number):
    """The largest double itself, written as an integer, is kept exactly, with its sign or not;
    so is any integer of its 309 digits (or fewer) below it: a minus sign is no digit."""
    assert parse_json("[%d]" % number) == [number]


@pytest.mark.parametrize("number", [LARGEST + 1, -(LARGEST + 1)])
def test_one_past_the_largest_double_is_refused(number):
    """The bound is the largest double itself, not its count of digits: one more, with its sign
    or not, is past it though it has no more digits."""
    with pytest.raises(InvalidJsonError, match="too large to be a finite double"):
        parse_json("[%d]" % number)


@pytest.mark.parametrize("number", ["9" * 309, "1e400", "-1" + "0" * 400 + ".5", "12345.5e999",
                                    "1." + "0" * 34 + "e400", "1." + "0" * 35 + "e400"])  # 40 and 41 characters
def test_a_number_too_large_is_named_by_its_first_40_characters_and_an_ellipsis_past_them(number):
    """Integer or not, the refusal quotes the number's start, and says when there is more of it."""
    with pytest.raises(InvalidJsonError) as refused:
        parse_json('{"n": %s}' % number)
    shown = number if len(number) <= 40 else number[:40] + "…"
    assert f"the number {shown} is too large to be a finite double" in str(refused.value)


def test_the_look_for_a_long_run_of_digits_starts_only_where_a_run_starts():
    assert _LONG_DIGITS.pattern.startswith(r"(?<!\d)")
    assert [m.start() for m in _LONG_DIGITS.finditer("x" + "1" * 700)] == [1]  # not again inside it
    assert [m.start() for m in _LONG_DIGITS.finditer(NEAR + "," + "1" * 309)] == [309]


def nested(depth: int, kind: str) -> str:
    """`depth` levels of arrays, of objects (each the value of key "k") or of both in turn."""
    opens = {"[": ["["], "{": ['{"k":'], "both": ["[", '{"k":']}[kind]
    closes = {"[": "]", '{"k":': "}"}
    levels = [opens[i % len(opens)] for i in range(depth)]
    return "".join(levels) + "0" + "".join(closes[level] for level in reversed(levels))


@pytest.mark.parametrize("kind", ["[", "{", "both"])
@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 5_000])
def test_a_body_nested_past_the_limit_is_refused_naming_the_body_and_the_limit(depth, kind):
    """Past the limit or past the parser's own recursion, the one wording of every depth refusal,
    whether arrays, objects or both nest."""
    with pytest.raises(InvalidJsonError) as refused:
        parse_json(nested(depth, kind))
    assert str(refused.value) == too_deep_message("request body")


@pytest.mark.parametrize("kind", ["[", "{", "both"])
def test_a_body_nested_to_the_limit_is_read(kind):
    assert parse_json(nested(MAX_JSON_DEPTH, kind)) is not None


def test_the_depth_refusal_names_what_nests_and_the_limit():
    said = too_deep_message("result")
    assert said.startswith("the result nests arrays and objects more than ")
    assert f"more than {MAX_JSON_DEPTH} levels deep (the result itself the first); at most {MAX_JSON_DEPTH}" in said


def test_many_brackets_side_by_side_are_no_depth():
    """Only nesting counts: a flat list of more objects than the depth limit is read whole."""
    body = "[" + ",".join(["{}"] * (MAX_JSON_DEPTH + 1)) + "]"
    assert parse_json(body) == [{}] * (MAX_JSON_DEPTH + 1)


@pytest.mark.parametrize("text, twice", [('{"a": 1, "b": 2, "b": 3}', "b"), ('[{"x": 0}, {"y": {"z": 1, "z": 1}}]', "z")])
def test_a_key_given_twice_is_refused_naming_that_key(text, twice):
    """Parsers disagree on which of two equal keys wins: the refusal names the key given twice,
    not another of the object's keys."""
    with pytest.raises(InvalidJsonError, match=f"key '{twice}' is given more than once in one object"):
        parse_json(text)


def test_a_key_given_twice_is_named_by_its_first_100_characters():
    """A key of a megabyte given twice is not quoted whole into the answer and the log."""
    key = "k" * 100
    with pytest.raises(InvalidJsonError) as refused:
        parse_json('{"%s": 1, "%s": 2}' % (key + "x" * 10_000, key + "x" * 10_000))
    assert f"key '{key}' is given more than once in one object" in str(refused.value)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_refused_by_name(constant):
    """Python reads them; JSON has no such numbers, and the refusal says which one was sent."""
    with pytest.raises(InvalidJsonError) as refused:
        read_json(b'{"x": %s}' % constant.encode())
    assert f"{constant} is not a JSON number" in str(refused.value)


def test_a_body_not_in_its_encoding_is_refused_saying_where():
    """The decoder's own words say which byte is wrong, and where."""
    with pytest.raises(InvalidJsonError) as refused:
        read_json(b'{"k": "\xff"}')
    assert str(refused.value).startswith("request body is not valid JSON: 'utf-8' codec can't decode byte 0xff")
    assert "position 7" in str(refused.value)


@pytest.mark.parametrize("body", [b"", b" ", b"\r\n\t "])
def test_an_empty_or_blank_body_is_refused_asking_for_a_json_value(body):
    with pytest.raises(InvalidJsonError, match="request body is empty; send a JSON value"):
        read_json(body)


@pytest.mark.parametrize("body", [rb'"\ud800"', rb'{"k": ["x\uDFFF"]}', rb'{"\udc00": 1}', rb'"\ude00\ud83d"'])
def test_a_lone_surrogate_escape_is_refused_wherever_it_stands(body):
    """Valid JSON but no Unicode character: nothing could store, log or hash it. In a value or
    a key, either case of hex digits, a low half before its high one."""
    with pytest.raises(InvalidJsonError) as refused:
        read_json(body)
    assert str(refused.value) == f"request body {NOT_UNICODE}, written as an escape"


@pytest.mark.parametrize("body, value", [(rb'{"k": "\ud83d\ude00"}', {"k": "\U0001F600"}),
                                         (rb'["\uD83D\uDE00", "\u00e9"]', ["\U0001F600", "\u00e9"]),
                                         ('{"\U0001F600": 1}'.encode("utf-16"), {"\U0001F600": 1})])
def test_a_surrogate_pair_is_one_character_and_read(body, value):
    """A pair's two escapes (or a character outside the BMP, here in UTF-16 with its byte
    order mark) are one character: read as it, not refused."""
    assert read_json(body) == value


def test_numbers_within_a_double_are_read_as_written():
    """Only numbers past a double are refused; every other one is the value it writes."""
    assert read_json(b'{"f": 12345.678, "e": -2.5e-3, "big": 1.5e308, "i": -7}') == {
        "f": 12345.678, "e": -0.0025, "big": 1.5e308, "i": -7}
