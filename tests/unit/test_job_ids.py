"""The one job-id parser behind every batch endpoint: each form polling clients send."""
import json

import pytest
from chalice.app import MultiDict

from chalicelib.api.errors import InvalidJsonError
from chalicelib.api.job_ids import extract_job_ids, normalize_job_ids
from chalicelib.domain.errors import InvalidRequestError
from chalicelib.domain.job import is_plausible_job_id
from chalicelib.domain.text import NOT_UNICODE


@pytest.mark.parametrize(
    "body, expected",
    [
        ({"job_ids": ["a", "b"]}, ["a", "b"]),
        ({"jobs": ["a", "b"]}, ["a", "b"]),
        ({"ids": ["a", "b"]}, ["a", "b"]),
        (["a", "b"], ["a", "b"]),
        ("a", ["a"]),
        ("a,b , c", ["a", "b", "c"]),
        (["a,b", "c"], ["a", "b", "c"]),
        ({"job_ids": "a,b"}, ["a", "b"]),
        ({"first": "a", "second": ["b", "c"]}, ["a", "b", "c"]),
        ([12, 7.0, 2.5], ["12", "7", "2.5"]),
        (42, ["42"]),
        ({"jobs": [{"id": "a"}, {"job_id": "b"}, {"id": ["c", "d"]}]}, ["a", "b", "c", "d"]),
        ([["a", ["b"]], "c"], ["a", "b", "c"]),
        ([{"id": "a", "status": "queued"}, {"job_id": "b", "status": "running", "queue": "high"}], ["a", "b"]),
    ],
    ids=[
        "job_ids", "jobs", "ids", "bare-list", "string", "comma-separated-string",
        "list-of-comma-strings", "comma-string-under-key", "dict-values", "numbers",
        "single-number", "job-objects", "nested-lists", "job-objects-with-other-fields",
    ],
)
def test_accepted_body_forms(body, expected):
    assert extract_job_ids(json.dumps(body)) == expected


def test_ids_key_wins_over_other_values_and_keys_are_tried_in_order():
    assert extract_job_ids(json.dumps({"other": "x", "jobs": ["a"]})) == ["a"]
    assert extract_job_ids(json.dumps({"ids": ["c"], "job_ids": ["a"], "jobs": ["b"]})) == ["a"]
    assert extract_job_ids(json.dumps({"jobs": ["b"], "ids": ["c"]})) == ["b"]


def test_ids_are_trimmed_deduplicated_and_kept_in_request_order():
    body = json.dumps([" b ", "a", "b", "\tc\n", "a,b", "", " , "])
    assert extract_job_ids(body) == ["b", "a", "c"]


@pytest.mark.parametrize("value", [None, True, False, [None, True], {"x": None}, "", " , ,"])
def test_values_that_carry_no_id_are_dropped(value):
    assert normalize_job_ids(value) == []


def test_bytes_and_str_bodies_parse_alike():
    assert extract_job_ids(b'["a", "b"]') == extract_job_ids('["a", "b"]') == ["a", "b"]
    assert extract_job_ids('["caf\u00e9"]'.encode("utf-8")) == ["caf\u00e9"]


def test_a_body_is_read_as_every_other_route_reads_one():
    assert extract_job_ids(b'\xef\xbb\xbf["a"]') == ["a"]  # a byte order mark, as POST /jobs accepts
    assert extract_job_ids('["a", "b"]'.encode("utf-16")) == ["a", "b"]
    for refused in (b'["caf\xe9"]', b'["\xed\xa0\x80"]', b'[NaN]', b'{"job_ids": ["a"], "job_ids": ["b"]}'):
        with pytest.raises(InvalidJsonError):  # not an id made of replacement characters, nor "nan"
            extract_job_ids(refused)
        assert extract_job_ids(refused, {"job_id": "q"}) == ["q"]


def test_every_value_of_a_repeated_query_argument_is_kept():
    query = MultiDict({"job_id": ["a", "b"], "job_ids": ["c,d", "a"]})
    assert extract_job_ids(None, query) == ["c", "d", "a", "b"]


@pytest.mark.parametrize("body", [None, b"", "", "   \n"])
def test_empty_body_falls_back_to_query_arguments(body):
    assert extract_job_ids(body, {"job_id": "a"}) == ["a"]
    assert extract_job_ids(body, {"job_ids": "a,b"}) == ["a", "b"]
    assert extract_job_ids(body, {"job_ids": "b", "job_id": "a,b"}) == ["b", "a"]
    assert extract_job_ids(body, None) == []
    assert extract_job_ids(body, {}) == []


def test_a_query_argument_given_more_than_once_keeps_every_value():
    """`?job_id=a&job_id=b` is how a form or URLSearchParams sends a list: each value counts,
    as rq-engine's parser (getlist) takes them, not only the last."""
    from chalice.app import MultiDict

    query = MultiDict({"job_id": ["a", "b,c"], "job_ids": ["d", "a"]})
    assert extract_job_ids(b"", query) == ["d", "a", "b", "c"]
    assert extract_job_ids("not json", MultiDict({"job_id": ["x", "y"]})) == ["x", "y"]


def test_body_that_is_not_json_falls_back_to_query_arguments():
    assert extract_job_ids("job_id=x&y", {"job_id": "a"}) == ["a"]


def test_body_that_is_not_json_without_query_ids_is_invalid_json():
    with pytest.raises(InvalidJsonError) as raised:
        extract_job_ids("{not json", {"other": "a"})
    assert raised.value.code == "invalid_json"


def test_json_body_without_ids_falls_back_to_query_arguments():
    assert extract_job_ids("[]", {"job_id": "a"}) == ["a"]
    assert extract_job_ids("{}", {"job_ids": "a"}) == ["a"]
    assert extract_job_ids("null", {"job_ids": "a"}) == ["a"]


def test_a_body_whose_ids_keys_name_none_falls_back_to_query_arguments():
    """rq-engine reads the query whenever the body names no job, `{"job_ids": []}` as much as
    `{}` or `[]`: a poller whose list is empty but whose URL names jobs is answered those."""
    from chalice.app import MultiDict

    for body in ({"job_ids": []}, {"job_ids": None, "jobs": ""}, {"ids": [], "other": "x"}):
        assert extract_job_ids(json.dumps(body), {"job_id": "a"}) == ["a"], body
        assert extract_job_ids(json.dumps(body), MultiDict({"job_ids": ["a,b"]})) == ["a", "b"], body


def test_json_body_with_ids_wins_over_query_arguments():
    assert extract_job_ids('["b"]', {"job_id": "a"}) == ["b"]


def test_ids_key_present_but_empty_does_not_fall_through_to_other_values():
    assert extract_job_ids(json.dumps({"job_ids": [], "other": "x"})) == []


def test_an_empty_or_null_ids_key_gives_way_to_the_next_that_names_ids():
    """rq-engine reads `job_ids or jobs or ids`: an empty one is passed over."""
    assert extract_job_ids(json.dumps({"job_ids": None, "ids": ["b"]})) == ["b"]
    assert extract_job_ids(json.dumps({"job_ids": [], "jobs": ["a"]})) == ["a"]
    assert extract_job_ids(json.dumps({"job_ids": "", "jobs": [], "ids": None, "other": "x"})) == []


def test_an_id_object_is_read_by_its_own_id_alone():
    """A job object nested in a list (as a poller echoes its jobs back) names its id under `id`,
    else `job_id`, else a key naming ids; its other fields are no ids."""
    body = [{"id": "a", "job_id": "x", "status": "queued"}, {"ids": ["b"], "note": "y"}, {"first": "c"}]
    assert extract_job_ids(json.dumps(body)) == ["a", "b", "c"]


@pytest.mark.parametrize("body", [rb'["ok", "\ud800"]', rb'{"job_ids": "x\udfff"}', rb'[{"id": "\udc00"}]'])
def test_an_id_holding_a_lone_surrogate_escape_is_an_invalid_request_naming_it(body):
    """JSON can carry `"\ud800"`, which no store, log or tag can encode: the request is refused
    (400 invalid_request), the id shown escaped."""
    with pytest.raises(InvalidRequestError) as refused:
        extract_job_ids(body)
    assert refused.value.code == "invalid_request"
    assert refused.value.message == f"a job id {NOT_UNICODE}"
    assert refused.value.details["job_id"] in ("\\ud800", "x\\udfff", "\\udc00")


def test_an_unencodable_id_is_shown_by_its_first_128_characters():
    with pytest.raises(InvalidRequestError) as refused:
        extract_job_ids(b'["' + b"a" * 200 + rb'\ud800"]')
    assert refused.value.details["job_id"] == "a" * 128


def test_a_text_body_holding_a_raw_lone_surrogate_is_not_json():
    """A body given as text whose characters cannot be UTF-8 is refused, not read with them replaced."""
    with pytest.raises(InvalidJsonError):
        extract_job_ids('["ok\ud800"]')
    assert extract_job_ids('["ok\ud800"]', {"job_id": "q"}) == ["q"]


@pytest.mark.parametrize(
    "job_id, plausible",
    [
        ("7d06c49d-ab2c-43df-bd96-b3f86caee3f5", True),
        ("rq:job.1_2", True),
        ("a" * 128, True),
        ("a" * 129, False),
        ("x' OR 1=1 --", False),
        ("../etc", False),
        ("", False),
        ("abc\n", False),  # `$` would accept a trailing newline; fullmatch does not
        ("abc#RUN#0001", False),
    ],
)
def test_plausible_ids(job_id, plausible):
    assert is_plausible_job_id(job_id) is plausible
