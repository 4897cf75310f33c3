import pytest

from chalicelib.api.etag import conditional_response, job_etag, matches
from chalicelib.domain.job import Job


def make_job(job_id="j1", version=1, gone=()) -> Job:
    return Job(id=job_id, type="demo.steps", tenant="acme", user="ann",
               created_at="2026-01-01T00:00:00.000Z", version=version, gone=list(gone))


def test_tag_is_weak_and_stable_for_the_same_versions():
    tag = job_etag("job", [("j1", make_job())])
    assert tag.startswith('W/"') and tag.endswith('"')
    assert tag == job_etag("job", [("j1", make_job())])


@pytest.mark.parametrize(
    "other",
    [
        ("job", [("j1", make_job(version=2))]),
        ("rq.jobinfo", [("j1", make_job())]),
        ("job", [("j1", None)]),
        ("job", [("j1", make_job()), ("j2", None)]),
        ("job", [("j1", make_job(gone=["result"]))]),
    ],
    ids=["new-version", "other-kind", "not-found", "more-ids", "object-gone"],
)
def test_tag_changes_with_version_kind_visibility_and_ids(other):
    assert job_etag(*other) != job_etag("job", [("j1", make_job())])


def test_a_gone_object_changes_the_tag_and_each_gone_field_tags_apart():
    """An object vanishing bumps no version, yet the answer changes (the field null, `gone`
    naming it): a 304 must not hide that."""
    tags = {job_etag("job", [("j1", make_job(gone=g))]) for g in ([], ["payload"], ["result"], ["payload", "result"])}
    assert len(tags) == 4
    assert job_etag("job", [("j1", make_job(gone=["result", "payload"]))]) == \
        job_etag("job", [("j1", make_job(gone=["payload", "result"]))])


def test_tag_depends_on_order():
    a, b = ("a", make_job("a")), ("b", make_job("b"))
    assert job_etag("batch", [a, b]) != job_etag("batch", [b, a])


def test_an_id_and_its_version_tag_apart_from_another_split_of_the_same_characters():
    assert job_etag("job", [("j1", make_job("j1", version=11))]) != job_etag("job", [("j11", make_job("j11", version=1))])


def test_an_id_holding_a_lone_surrogate_is_tagged_apart_from_every_other_id():
    """A single-id path may hand over a lone surrogate (answered not found): it is tagged, not a
    500, and not as the id its bytes would be replaced by."""
    ids = ("\ud800", "\udbff", "?", "\ufffd")
    assert len({job_etag("rq.jobinfo", [(job_id, None)]) for job_id in ids}) == len(ids)


@pytest.mark.parametrize(
    "header, expected",
    [
        ('W/"abc"', True),
        ('"abc"', True),
        ('w/"abc"', True),
        ('"x", W/"abc"', True),
        ("*", True),
        (' "x" ,  "abc" ', True),
        ('"abcd"', False),
        ("abc", False),  # unquoted: not the tag
        ('"x", "y"', False),
        ("", False),
        (None, False),
    ],
)
def test_if_none_match_uses_weak_comparison(header, expected):
    assert matches(header, 'W/"abc"') is expected


def test_conditional_response_is_304_without_body_on_a_match():
    hit = conditional_response('W/"abc"', 'W/"abc"', {"id": "j1"})
    assert hit.status_code == 304 and hit.body == ""
    assert hit.headers["ETag"] == 'W/"abc"'
    miss = conditional_response('W/"old"', 'W/"abc"', {"id": "j1"})
    assert miss.status_code == 200 and miss.body == {"id": "j1"}
    assert miss.headers["ETag"] == 'W/"abc"' and miss.headers["Cache-Control"] == "private, no-cache"
